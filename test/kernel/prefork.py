# A prefork server, as Apache prefork or gunicorn run: the parent listens on 127.0.0.1:PORT and
# forks CHILDREN processes that each accept() on the inherited listener. A child reads each
# connection to its end and then never closes it (a CLOSE_WAIT leak, held by that child).
#   ip netns exec NS python3 test/kernel/prefork.py PORT CHILDREN
# Prints {"pid": parent, "children": [...]} once the children run; exits (with them) on stdin EOF.
import json, os, signal, socket, sys

port, n = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
children = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        held = []
        while True:
            c, _ = srv.accept()
            while c.recv(4096):
                pass
            held.append(c)  # the peer closed: this end stays in CLOSE_WAIT
    children.append(pid)
def stop(*_):
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
print(json.dumps({"pid": os.getpid(), "children": children}), flush=True)
sys.stdin.read()
stop()
