timeout 1 sleep 5; echo "status $?"
timeout 5 echo quick; echo "status $?"
timeout -s INT 1 sleep 5; echo "status $?"
timeout 1 sh -c 'trap "echo got TERM; exit 3" TERM; while :; do sleep 0.1; done'; echo "status $?"
