"""The official Kubernetes Python client against a running skiff cluster: typed reads of
what the agent wrote (a container that could not start), and exec streams as its users
write them (a shell fed line by line, stdin closed to end `cat`).

Usage: client_e2e.py KUBECONFIG POD NOSTART_POD. Exits non-zero on the first failure."""

import sys

from kubernetes import client, config
from kubernetes.stream import stream

kubeconfig, pod, nostart = sys.argv[1:4]
config.load_kube_config(kubeconfig)
api = client.CoreV1Api()

# Typed models decode every field: a start failure's times included.
p = api.read_namespaced_pod(nostart, "default")
term = p.status.container_statuses[0].state.terminated
assert term.reason == "StartError" and term.exit_code == 128, term
assert term.started_at is not None and term.finished_at is not None, term
api.read_namespaced_service("kubernetes", "default")


def shell(command):
    return stream(
        api.connect_get_namespaced_pod_exec,
        pod,
        "default",
        command=command,
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )


# A shell fed one line at a time answers each before the next is written.
sh = shell(["/bin/sh"])
sh.write_stdin("echo test string 1\n")
line = sh.readline_stdout(timeout=10)
assert line == "test string 1", repr(line)
sh.write_stdin("echo test string 2 >&2\n")
line = sh.readline_stderr(timeout=10)
assert line == "test string 2", repr(line)
sh.write_stdin("exit 3\n")
sh.run_forever(timeout=10)
assert not sh.is_open()
assert sh.returncode == 3, sh.returncode

# cat ends when the client closes stdin (v5's close frame).
cat = shell(["cat"])
cat.write_stdin("hello\n")
line = cat.readline_stdout(timeout=10)
assert line == "hello", repr(line)
cat.close_channel(0)
cat.run_forever(timeout=10)
assert not cat.is_open(), "cat did not end when stdin closed"
assert cat.returncode == 0, cat.returncode
print("python client: ok")
