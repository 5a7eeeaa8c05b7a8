#!/usr/bin/env python3
"""Test listener for scripts/demo.sh and scripts/test-systemd.sh: one dual-stack TCP listener
per port given, each answering every connection with "ok". Runs until killed."""
import socket
import sys
import threading


def serve(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        c.sendall(b"ok\n")
        c.close()


for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
