#!/bin/bash
# A=<rev> B=<rev> ab.sh: fresh-clone `make run` of each, back to back; /tmp/ab/{times.txt,make_X.log,time_X.txt}
mkdir -p /tmp/ab; : > /tmp/ab/times.txt
for X in A B; do
  rev=${!X}; rm -rf /tmp/run$X; git clone -q /work/main /tmp/run$X; cd /tmp/run$X && git checkout -q $rev
  echo "$X $rev start $(date -Is)" >> /tmp/ab/times.txt
  PATH=/tmp/stubbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/time -v -o /tmp/ab/time_$X.txt make run > /tmp/ab/make_$X.log 2>&1
  echo "$X $rev rc=$? end $(date -Is)" >> /tmp/ab/times.txt
done
