"""A fuzz benchmark: every reader, parser, port (with tool output as input) and each
service's setup and pass, driven with seeded generated inputs (random bytes, random JSON,
mutations of the contracts' examples, hostile strings).

    /usr/bin/python3 bench/fuzz --count 300
    /usr/bin/python3 bench/fuzz --count 10000 --workers 2   # about an hour on 2 cores
    /usr/bin/python3 bench/fuzz --kinds service --service-count 300
    /usr/bin/python3 bench/fuzz --list            # entry points and their contracts
    /usr/bin/python3 bench/fuzz --seed S --only parse_inbox
    /usr/bin/python3 bench/fuzz --replay /tmp/gtu-fuzz-crashes-S/<entry>/<seed>-<i>.pickle

A crash is an exception outside the entry point's documented contract (see
``bench/fuzz/targets.py``); for a service, a traceback or an exit status other than
0/1/78. Prints one line per entry point (inputs, crashes, seconds), the distinct crashes
with their smallest input, a total line, and exits 1 on any crash.
"""
