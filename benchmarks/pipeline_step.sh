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
