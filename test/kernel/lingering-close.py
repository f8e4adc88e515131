# A server that closes the way python3 -m http.server and servers with lingering close do:
# shutdown(SHUT_WR), then close() while its FIN is not yet acked — here because nftables drops
# the client's ACKs for HOLD_MS, so FIN_WAIT1 lasts past the close (FIN_WAIT1 -> FIN_WAIT1).
#   ip netns exec NS python3 test/kernel/lingering-close.py PORT HOLD_MS
# Prints {"pid": ..., "clientPort": ...} when done.
import json, os, socket, subprocess, sys, time

port, hold = int(sys.argv[1]), int(sys.argv[2]) / 1000
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
cli = socket.create_connection(("127.0.0.1", port))
child, _ = srv.accept()
nft = lambda *a: subprocess.run(["nft", *a], check=True)
nft("add", "table", "inet", "tcpdwell_linger")
nft("add", "chain", "inet", "tcpdwell_linger", "in", "{ type filter hook input priority 0; }")
nft("add", "rule", "inet", "tcpdwell_linger", "in", "tcp", "dport", str(port), "drop")
child.shutdown(socket.SHUT_WR)  # FIN out; its ACK is dropped: FIN_WAIT1 stays
time.sleep(hold / 2)
child.close()                   # still in FIN_WAIT1: FIN_WAIT1 -> FIN_WAIT1
time.sleep(hold / 2)
nft("delete", "table", "inet", "tcpdwell_linger")
time.sleep(1.2)                 # the retransmitted FIN is acked now: FIN_WAIT1 -> FIN_WAIT2
port_c = cli.getsockname()[1]
cli.close()
print(json.dumps({"pid": os.getpid(), "clientPort": port_c}), flush=True)
