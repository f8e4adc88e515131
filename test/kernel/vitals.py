# A transfer of known size on loopback, for the vital-signs tests:
#   ip netns exec NS python3 test/kernel/vitals.py PORT UP DOWN DROP
# A client connects to a server on 127.0.0.1:PORT, sends UP bytes, and the server answers with
# DOWN bytes. With DROP = N > 0, nftables (table inet tcpdwell_vitals, removed right after the
# transfer) drops every Nth segment arriving for PORT during the transfer, so the connection really
# retransmits. Prints {"pid", "cport"} once the transfer is done, then reads one command from
# stdin: "abort" (the client closes with SO_LINGER 0: an RST, sent after its close) or "close"
# (the client closes, the server reads the EOF and closes: a graceful close, client first).
# Prints {"closed": true} after, and exits when stdin closes.
import json, os, socket, struct, subprocess, sys, threading, time

port, up, down, drop = (int(a) for a in sys.argv[1:5])
nft = lambda *a: subprocess.run(["nft", *a], check=True)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
cli = socket.socket()
cli.connect(("127.0.0.1", port))
child, _ = srv.accept()
if drop:
    nft("add", "table", "inet", "tcpdwell_vitals")
    # On input: a segment dropped on output fails to leave (tcp_transmit_skb sees the error) and is sent
    # again as new data, no retransmit; one dropped on input was sent, and is really lost.
    nft("add", "chain", "inet", "tcpdwell_vitals", "in", "{ type filter hook input priority 0; }")
    nft("add", "rule", "inet", "tcpdwell_vitals", "in", "tcp", "dport", str(port), "numgen", "inc", "mod", str(drop), "==", "0", "drop")

def read_exactly(s, n):
    got = 0
    while got < n:
        b = s.recv(min(65536, n - got))
        if not b:
            raise SystemExit(f"EOF after {got} of {n} bytes")
        got += len(b)

try:
    sender = threading.Thread(target=lambda: cli.sendall(b"u" * up))
    sender.start()
    read_exactly(child, up)
    sender.join()
    child.sendall(b"d" * down)
    read_exactly(cli, down)
finally:
    if drop:
        nft("delete", "table", "inet", "tcpdwell_vitals")
time.sleep(0.05)  # the last ACKs
print(json.dumps({"pid": os.getpid(), "cport": cli.getsockname()[1]}), flush=True)

cmd = sys.stdin.readline().strip()
if cmd == "abort":
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cli.close()
    try:
        child.recv(1)
    except ConnectionResetError:
        pass
    child.close()
else:
    cli.close()
    if child.recv(1) != b"":
        raise SystemExit("expected EOF")
    child.close()
time.sleep(0.1)
print(json.dumps({"closed": True}), flush=True)
sys.stdin.read()
srv.close()
