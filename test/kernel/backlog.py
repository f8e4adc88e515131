# A listener that never accepts, and clients that pile up on it, for the SYN pressure tests:
#   ip netns exec NS python3 test/kernel/backlog.py PORT BACKLOG CLIENTS
# Listens on 127.0.0.1:PORT with listen(BACKLOG) and never calls accept(); prints one JSON line
# {"pid": ...}. On a line on stdin it starts CLIENTS non-blocking connects to it and prints
# "connecting"; it keeps every socket open until stdin closes.
import json, os, socket, sys

port, backlog, clients = (int(a) for a in sys.argv[1:4])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(backlog)
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.readline()
held = []
for _ in range(clients):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    held.append(c)
print("connecting", flush=True)
sys.stdin.read()
