# Real work for the root-file-system suite (crates/vm-cli/tests/rootfs.rs): subprocesses
# (fork/vfork/posix_spawn, execve of programs of the root, pipes, wait statuses), with json
# and hashlib on what they print. Its output must be the same under qemu-riscv64 -L and
# vmx --root.
import subprocess, json, hashlib, sys
r = subprocess.run(["sort", "-r"], input=b"b\na\nc\n", capture_output=True)
print(r.returncode, r.stdout)
print(subprocess.check_output(["sh", "-c", "echo $((6*7)); exit 0"]).decode().strip())
p = subprocess.run(["sh", "-c", "exit 3"])
print("status", p.returncode)
out = subprocess.check_output([sys.executable, "-c", "import json; print(json.dumps([1,2]))"])
print(json.loads(out), hashlib.sha1(out).hexdigest())
with subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as q:
    o, _ = q.communicate(b"x" * 100000)
print(len(o))
print(subprocess.run("echo one | tr a-z A-Z; echo two >&2", shell=True, capture_output=True))
