# Turn the raw samples of tests/bench/run.sh into JSON lines (one object per line).
#
# Input (jq -R -n): samples.tsv, one line per measurement:
#   round <TAB> runtime <TAB> op <TAB> value <TAB> status <TAB> note
# where status is "ok" or "fail" and value is empty when the operation failed.
# Arguments: $meta (object), $ops ([{key,label,unit}]), $rts ([names]), $pairs ([[num, den]]).
# Output, in this order:
#   {"type":"meta", ...}                      the run's header ($meta)
#   {"type":"sample", round, runtime, op, value, status, note}
#   {"type":"summary", op, runtime, samples, ok, failed, median, p90, min, max, unit}
#   {"type":"ratio", op, num, den, ratio_of_medians, paired_median, paired_rounds}
# A ratio is only given when both cells are complete (no failed sample): a median of a
# runtime that failed some rounds is not comparable.

def median: sort | length as $n
  | if $n == 0 then null
    elif $n % 2 == 1 then .[($n - 1) / 2]
    else (.[$n / 2 - 1] + .[$n / 2]) / 2 end;
# nearest-rank 90th percentile: the smallest sample >= 90 % of the samples
def p90: sort | length as $n
  | if $n == 0 then null else .[((0.9 * $n) | ceil) - 1] end;
def r4: if . == null then null else (. * 10000 | round) / 10000 end;
def num: if . == "" then null else tonumber end;

[inputs | select(length > 0) | split("\t")
  | {round: (.[0] | tonumber), runtime: .[1], op: .[2], value: (.[3] | num),
     status: .[4], note: (.[5] // "")}] as $s
| [ $ops[] as $op | $rts[] as $rt
    | [$s[] | select(.op == $op.key and .runtime == $rt)] as $g
    | [$g[] | select(.status == "ok") | .value] as $v
    | {type: "summary", op: $op.key, label: $op.label, unit: $op.unit, runtime: $rt,
       samples: ($g | length), ok: ($v | length), failed: (($g | length) - ($v | length)),
       median: ($v | median | r4), p90: ($v | p90 | r4),
       min: ($v | min | r4), max: ($v | max | r4)} ] as $sum
| ({type: "meta"} + $meta),
  ($s[] | {type: "sample"} + .),
  $sum[],
  ( $ops[] as $op | $pairs[] as [$a, $b]
    | ($sum[] | select(.op == $op.key and .runtime == $a)) as $sa
    | ($sum[] | select(.op == $op.key and .runtime == $b)) as $sb
    | ($sa.samples > 0 and $sa.failed == 0 and $sb.samples > 0 and $sb.failed == 0) as $complete
    # per-round ratios: both runtimes ran this op in the same round, close in time
    | [ $s[] | select(.op == $op.key and .runtime == $a and .status == "ok") as $x
        | $s[] | select(.op == $op.key and .runtime == $b and .status == "ok"
                        and .round == $x.round and .value > 0)
        | $x.value / .value ] as $pr
    | {type: "ratio", op: $op.key, num: $a, den: $b,
       ratio_of_medians: (if $complete and $sb.median > 0 then ($sa.median / $sb.median | r4) else null end),
       paired_median: (if $complete then ($pr | median | r4) else null end),
       paired_rounds: ($pr | length)} )
