# Sourced by coffee_rl_pipeline.sh and coffee_rm_sft_seeds.sh: the options their Taskmaster Coffee runs
# share, so that the seeds script's full reward model is the RL pipeline's one, option for option.
# Needs DATA, MAX_EVAL and RM_STEPS set.
CTX=(--data-dir "$DATA" --max-prompt-tokens 128 --mixed-precision no)   # fp32 everywhere
QUIET=(--report-to none --progress false)
RM=(--task taskmaster-coffee "${CTX[@]}" "${QUIET[@]}" --max-response-tokens 48 --max-eval-examples "$MAX_EVAL")
# the RL pipeline's reward model: shard 1/2 of the training conversations, validation every 50 steps (the
# best checkpoint by validation AUC is kept), full fine-tuning at 5e-5 (the best full rate on validation in
# benchmarks/COFFEE_RM_RESULTS.md); add --model, --seed and the output folder
RM_TRAIN=(--batch-size 16 --max-steps "$RM_STEPS" --eval-every 50 --eval-batch-size 32 --train-shard 1/2)
RM_FULL=(--mode full --learning-rate 5e-5)
