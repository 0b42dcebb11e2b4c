#!/usr/bin/env bash
# Checks the layering rules of DESIGN.md and STYLE.md on the C sources:
#   - c/src/core and c/src/sim include no uv.h, msgpack.h, Python.h, Lua headers, <time.h>,
#     <sys/time.h>, <pthread.h> or <threads.h>, and call no rand(), srand(), time(),
#     clock_gettime() or gettimeofday(): time and randomness arrive as inputs;
#   - in c/src and c/include, msgpack.h is included only in c/src/wire and uv.h only in c/src/uv
#     (and in the public c/include/craft/uv.h, the runtime's API);
#   - a layer includes internal headers only of the layers below it:
#       core: core   storage: core   sim: core, storage   wire: core   uv: core, storage, wire
# Comments and string literals are ignored. Prints every violation; exits 1 if there is any.
# Usage: scripts/check-layers.sh [repo-root]
set -uo pipefail

root=${1:-"$(cd "$(dirname "$0")/.." && pwd)"}
cd "$root" || exit 2

shopt -s nullglob globstar
files=(c/src/**/*.[ch] c/include/**/*.h)
if [ ${#files[@]} -eq 0 ]; then
    echo "check-layers: no sources yet"
    exit 0
fi

# perl is part of every Debian system (perl-base).
perl -e '
use strict;
use warnings;

my %allowed = (
    core    => [qw(core)],
    storage => [qw(core storage)],
    sim     => [qw(core sim storage)],
    wire    => [qw(core wire)],
    uv      => [qw(core storage uv wire)],
);
my $layer_re = join "|", keys %allowed;
my $bad = 0;

sub report { my ($file, $line, $what) = @_; print "$file:$line: $what\n"; $bad = 1; }

for my $file (@ARGV) {
    open my $fh, "<", $file or do { report($file, 0, "cannot read: $!"); next };
    local $/;
    my $text = <$fh>;
    close $fh;

    # Blank out comments and string/char literals, keeping newlines so line numbers hold.
    # Includes are read from the original lines, since "foo.h" is itself a string.
    my $code = $text;
    $code =~ s{
        (/\*.*?\*/) | (//[^\n]*) | ("(?:\\.|[^"\\\n])*") | (\x27(?:\\.|[^\x27\\\n])*\x27)
    }{ my $m = $&; $m =~ s/[^\n]/ /g; $m }gsxe;

    my ($layer) = $file =~ m{^c/src/($layer_re)/};
    my $pure = defined $layer && ($layer eq "core" || $layer eq "sim");
    my @orig = split /\n/, $text, -1;
    my @clean = split /\n/, $code, -1;

    for my $i (0 .. $#clean) {
        my $n = $i + 1;
        # An include: the directive survives in the cleaned line, the name in the original.
        if ($clean[$i] =~ /^\s*#\s*include\b/ && $orig[$i] =~ /^\s*#\s*include\s*([<"])([^>"]+)[>"]/) {
            my ($delim, $h) = ($1, $2);
            my $shown = $delim eq "<" ? "<$h>" : "\"$h\"";
            if ($pure) {
                if ($h =~ m{^(uv|msgpack)(\.h$|/)} || $h =~ m{^(Python\.h|lua\.h|lauxlib\.h|lualib\.h|luajit\.h)$}) {
                    report($file, $n, "$layer includes $shown: core and sim do no I/O and know no binding");
                } elsif ($h =~ m{^(time\.h|sys/time\.h|sys/times\.h)$}) {
                    report($file, $n, "$layer includes $shown: core and sim read no clock (time is an input)");
                } elsif ($h =~ m{^(pthread\.h|threads\.h)$}) {
                    report($file, $n, "$layer includes $shown: core and sim start no threads");
                }
            }
            if ($h =~ m{^msgpack(\.h$|/)} && $file !~ m{^c/src/wire/}) {
                report($file, $n, "includes $shown outside c/src/wire: msgpack lives only in the wire layer")
                    unless $pure;
            }
            if ($h =~ m{^uv(\.h$|/)} && $file !~ m{^c/src/uv/} && $file ne "c/include/craft/uv.h") {
                report($file, $n, "includes $shown outside c/src/uv: libuv lives only in the uv layer")
                    unless $pure;
            }
            if (defined $layer && $delim eq "\"" && $h =~ m{^(?:\.\./)?($layer_re)/}) {
                my $dep = $1;
                report($file, $n, "$layer includes $shown: $layer may use only " . join(", ", @{$allowed{$layer}}))
                    unless grep { $_ eq $dep } @{$allowed{$layer}};
            }
            next;
        }
        if ($pure && $clean[$i] =~ /(?<![\w.>])(rand|srand|time|clock_gettime|gettimeofday)\s*\(/) {
            report($file, $n, "$layer calls $1(): core and sim take time and randomness as inputs");
        }
    }
}
exit $bad;
' "${files[@]}"
status=$?
if [ $status -eq 0 ]; then
    echo "check-layers: ${#files[@]} files follow the layering rules"
fi
exit $status
