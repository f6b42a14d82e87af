# Helpers every bench script sources: progress lines on stderr, timestamps and the median.
log() { printf '\n== %s\n' "$*" >&2; }
now() { date +%s.%N; }
# Seconds from timestamp $1 to $2, to the millisecond.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# The median of the numbers on stdin, one a line ("n/a" for none).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
