"""An ordinary Python program that never asks for TCP keepalive.

Run it with libkeepalive preloaded (README, "Try it") and it reports what the kernel
says about its sockets: SO_KEEPALIVE on, the timers from the environment, and the
keepalive timer that `ss -tno` shows for the live connection.
"""
import shutil
import socket
import subprocess

server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
accepted, _ = server.accept()
port = server.getsockname()[1]

print(f"{'socket':<10} {'SO_KEEPALIVE':>12} {'TCP_KEEPIDLE':>13} {'TCP_KEEPINTVL':>13} {'TCP_KEEPCNT':>11}")
for name, sock in [("client", client), ("accepted", accepted)]:
    on = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
    intvl = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
    cnt = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
    print(f"{name:<10} {'on' if on else 'off':>12} {idle:>13} {intvl:>13} {cnt:>11}")

if shutil.which("ss"):
    print(f"\n$ ss -tno state established '( sport = :{port} or dport = :{port} )'")
    subprocess.run(["ss", "-tno", "state", "established", f"( sport = :{port} or dport = :{port} )"])
