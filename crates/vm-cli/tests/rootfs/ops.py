# Real work for the root-file-system suite (crates/vm-cli/tests/rootfs.rs): file operations
# in a granted work directory (argv[1]), json, hashlib, re, /dev and /proc (auxv included).
# Its output must be the same under qemu-riscv64 -L and vmx --root.
import os, sys, json, hashlib, re, stat
w = sys.argv[1]
os.chdir(w)
print(os.getcwd().replace(w, "W"))
os.makedirs("a/b", exist_ok=True)
with open("a/b/f.txt", "w") as f:
    f.write("hello\n" * 3)
os.chdir("a")
os.rename("b/f.txt", "b/g.txt")
os.chmod("b/g.txt", 0o640)
os.symlink("b/g.txt", "link")
os.link("b/g.txt", "hard")
print(oct(stat.S_IMODE(os.stat("b/g.txt").st_mode)), os.stat("b/g.txt").st_nlink, os.readlink("link"))
print(open("link").read().count("hello"))
os.truncate("hard", 6)
os.utime("hard", (1_000_000_000, 1_000_000_000))
print(os.stat("b/g.txt").st_size, int(os.stat("b/g.txt").st_mtime))
fd = os.open("b", os.O_RDONLY)
os.chdir(fd)
print(sorted(os.listdir(".")), os.getcwd().replace(w, "W"))
os.chdir("..")
os.replace("hard", "hard2")
print(sorted(os.listdir(".")))
print(os.statvfs(".").f_namemax)
print(os.access("/usr/bin/ls", os.R_OK))
print(json.dumps({"k": [1, 2, {"x": None}]}, sort_keys=True))
print(hashlib.sha256(b"abc" * 1000).hexdigest(), hashlib.md5(b"x").hexdigest())
print(re.findall(r"(\w+)@(\w+)\.com", "a@b.com, c@d.com"))
print(open("/dev/null").read() == "", len(open("/dev/zero", "rb").read(5)), len(os.urandom(8)))
print(open("/proc/sys/kernel/osrelease").read() == os.uname().release + "\n")
print(os.path.exists("/proc/self/exe"))
import struct
aux = open("/proc/self/auxv", "rb").read()
pairs = dict(struct.unpack_from("<QQ", aux, i) for i in range(0, len(aux), 16))
print(len(aux) % 16, pairs.get(0), pairs[6], pairs[4], sorted(k for k in pairs if k in (3, 5, 7, 9, 25, 31)))
