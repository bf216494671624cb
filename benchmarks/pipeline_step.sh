# Sourced by the *_pipeline.sh benchmarks: `step NAME DONE_PATH CMD...` runs CMD into $OUT/NAME.log
# unless DONE_PATH exists (so an interrupted pipeline continues where it stopped), and stops the
# pipeline with the log's tail when CMD fails.
step() {
  local name=$1 done=$2; shift 2
  if [ -e "$done" ]; then echo "$name: done already ($done)"; return; fi
  echo "$name: perlhf ${*:4}"
  local t0=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1 || { echo "$name: FAILED, see $OUT/$name.log"; tail -5 "$OUT/$name.log"; exit 1; }
  echo "$name: done in $((SECONDS - t0)) s"
}

# `demo_args VAR STEP [--reward-dir R --judge-dir J ...]`: the array VAR holds `perlhf demo`'s own command of
# STEP (rm-full, rm-lora, rm-judge, rl-full, rl-lora, eval; `python -m perlhf.demo --help`), less its output
# paths, so a script reruns a demo step without retyping it; options added after it win.
demo_args() {
  local var=$1 text; shift
  text=$(python -m perlhf.demo "$@") || exit 2
  mapfile -t "$var" <<< "$text"
}
