echo start
x=$(echo hello | tr a-z A-Z); echo "subst: $x"
echo "a b c" | wc -w
( echo sub1; echo sub2 ) | sort -r
echo redirect > out.txt; cat < out.txt
trap 'echo trapped USR1' USR1
kill -USR1 $$
echo after trap
seq 1 5 | xargs echo items:
sh -c 'exit 3'; echo "status $?"
false || echo "or works"
for i in 1 2 3; do echo "loop $i"; done | tail -n 1
echo done
