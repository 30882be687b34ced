# 50 command substitutions of three-stage pipelines, xargs, sort and uniq.
i=0; t=0
while [ $i -lt 50 ]; do
  c=$(echo "a b c $i" | tr a-z A-Z | wc -w)
  t=$((t + c)); i=$((i + 1))
done
echo "$t words"
seq 1 50 | xargs -n 7 echo | sort -r | head -n 3
printf 'b\na\nb\nc\na\n' | sort | uniq -c
sh -c 'trap "echo got TERM; exit 4" TERM; kill -TERM $$; echo not reached'; echo "sh status $?"
