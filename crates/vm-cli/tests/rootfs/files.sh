# Real work for the root-file-system suite (crates/vm-cli/tests/rootfs.rs), run by Debian's
# dash: cd, rename, chmod, symlink and tar in the granted work directory ($1), pipes and
# subshells. Its output must be the same under qemu-riscv64 -L and vmx --root.
set -e
cd "$1"
mkdir -p d/e
echo hello > d/e/f.txt
cd d
mv e/f.txt e/g.txt
chmod 750 e/g.txt
ln -s e/g.txt link
cat link
tar cf ../t.tar e link
cd ..
mkdir x
cd x
tar xf ../t.tar
ls -l e/g.txt | cut -c1-10
readlink link
tar tf ../t.tar | sort
stat -c '%a %s %F' e/g.txt link
echo $(( $(wc -c < e/g.txt) * 2 ))
sh -c 'exit 5' || echo "status $?"
echo done | tr a-z A-Z
(cd .. && pwd | sed "s|$1|W|")
