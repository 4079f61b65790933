#!/bin/sh
echo "running as $(id -u):$(id -g) in $(pwd)"
echo "files under /keptn:"; find /keptn -type f
echo "writable /keptn:" && echo ok > /keptn/result.txt && cat /keptn/result.txt
