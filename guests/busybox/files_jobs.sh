rm -rf d && mkdir d
echo one > d/a; echo two > d/b
tar -czf x.tgz d && rm -rf d && tar -xzf x.tgz && cat d/a d/b
echo "x y z" | (read a b c; echo "$c $b $a")
i=0; while [ $i -lt 20 ]; do echo $i; i=$((i+1)); done | grep 1 | wc -l
exec 3>fd3; echo via3 >&3; exec 3>&-; cat fd3
echo end
