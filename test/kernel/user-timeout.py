# A connection that dies of TCP_USER_TIMEOUT, with no RST either way, for the reset tests:
#   ip netns exec NS python3 test/kernel/user-timeout.py PORT
# Connects a client (TCP_USER_TIMEOUT 300 ms) to a server on 127.0.0.1:PORT, then drops every
# segment of the connection with nftables (table inet tcpdwell_uto, removed at the end) and has
# the client send: its retransmissions go unanswered until the kernel gives up with ETIMEDOUT.
# Prints one JSON line when the client has died, {"pid": ..., "error": "ETIMEDOUT"}, then waits
# for stdin to close before it cleans up (the server's close would draw an RST: not the test's).
import errno, json, os, socket, subprocess, sys

port = int(sys.argv[1])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
cli = socket.socket()
cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 300)
cli.connect(("127.0.0.1", port))
child, _ = srv.accept()
nft = lambda *a: subprocess.run(["nft", *a], check=True)
nft("add", "table", "inet", "tcpdwell_uto")
nft("add", "chain", "inet", "tcpdwell_uto", "out", "{ type filter hook output priority 0; }")
nft("add", "rule", "inet", "tcpdwell_uto", "out", "tcp", "sport", str(port), "drop")
nft("add", "rule", "inet", "tcpdwell_uto", "out", "tcp", "dport", str(port), "drop")
try:
    cli.send(b"x" * 100)
    cli.recv(1)  # blocks until the kernel gives up
    err = "none"
except OSError as e:
    err = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({"pid": os.getpid(), "error": err}), flush=True)
sys.stdin.read()
nft("delete", "table", "inet", "tcpdwell_uto")
child.close()
srv.close()
