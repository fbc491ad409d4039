#!/usr/bin/env bash
# Issue 22: LGM-Pose in COCO's conventions. Usage: scripts/train_coco.sh data | RUN...
#   data       the teacher's detections, the cleaned sets (printing the convention table), the pseudo-labels
#   long       from random weights, 150k crops (50 x 3,000) with the decay, never the LSPET holdout
#   long_mse   the same with the paper's plain MSE: the loss ablation (run beside `long` for its first epochs)
#   mpii_clean the 16-joint MPII model fine-tuned from the long run's final weights (BASE=...), partial init
#   ab_base ab_all ab_noboxes ab_noconv ab_nosampling ab_nodistill ab_all_fg
#              same-budget fine-tuning from the shipped weights (7 x 3,000 crops with the decay): the shipped recipe's
#              data, items 1-4 together, each left out in turn, and the foreground-weighted loss on top
# Every run resumes exactly from runs/<run>/last.pt. Data: ../shared/data (DATA=...), vtest.avi from Debian's
# opencv-doc (VTEST=...); derived data under runs/data. coco-mini is never read here.
set -euo pipefail
cd "$(dirname "$0")/.."
export YOLO_OFFLINE=1
L="${PYTHON:-.venv/bin/python} -m app.cli"  # the checkout it runs from (a worktree too), not the installed one
D=${DATA:-../shared/data}
R=runs/data
C=$R/clean
VTEST=${VTEST:-/tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi}

data() {
  [ -d $R/lspet_split ] || $L holdout --data $D/lspet --last 700 --out $R/lspet_split
  [ -f $R/teacher/sports.json ] || $L teacher --data $D/sports:train --out $R/teacher/sports.json
  [ -f $R/teacher/fashion.json ] || $L teacher --data $D/fashion:train --out $R/teacher/fashion.json
  [ -f $R/teacher/lspet.json ] || $L teacher --data $R/lspet_split:train --out $R/teacher/lspet.json
  # training sets cleaned against the teacher; then the validation splits take their training set's offsets only
  if [ ! -f $C/conventions.json ]; then
    $L clean --data $R/lspet_split:train $D/fashion:train $D/sports:train \
      --teacher $R/teacher/lspet.json $R/teacher/fashion.json $R/teacher/sports.json --out $C | tee $R/conventions.md
    $L clean --data $D/fashion:val $R/lspet_split:holdout --teacher - - --out $C | tee -a $R/conventions.md
  fi
  local P=$R/pseudo_video
  [ -f $P/annotations/person_keypoints_street.json ] || \
    $L pseudo-label --video $D/videos/street_pedestrians.mp4 --every 2 --split street --out $P
  [ -f $P/annotations/person_keypoints_town.json ] || \
    $L pseudo-label --video $D/videos/towncentre_pedestrians.mp4 --every 1 --imgsz 1280 --split town --out $P
  [ -f $P/annotations/person_keypoints_indoor.json ] || \
    $L pseudo-label --video $D/videos/one_person_indoor.mp4 --every 5 --split indoor --out $P
  [ -f $R/pseudo_lspet/annotations/person_keypoints_train.json ] || \
    $L pseudo-label --data $R/lspet_split:train --detections $R/teacher/lspet.json --out $R/pseudo_lspet
  # ablation variants of the cleaned training sets: each leaves one step out
  for variant in "noboxes conventions fill" "noconv boxes fill"; do
    set -- $variant; local out=$R/clean_$1; shift
    [ -f $out/conventions.json ] || $L clean --data $R/lspet_split:train $D/fashion:train $D/sports:train \
      --teacher $R/teacher/lspet.json $R/teacher/fashion.json $R/teacher/sports.json --steps "$@" --out $out >/dev/null
  done
  # held-out video frames no run trains on: the teacher's confident joints as validation labels
  [ -f $R/vtest_teacher/annotations/person_keypoints_val.json ] || \
    $L pseudo-label --video "$VTEST" --every 10 --imgsz 960 --kpt-min 0.5 --split val --out $R/vtest_teacher
}

# Cleaned labels, teacher pseudo-labels of everyone else; by person (fashion 2x, sports 3x: cap 3x the median).
TRAIN=(--data $C/lspet_split:train $C/fashion:train $C/sports:train $R/pseudo_lspet:train
       $R/pseudo_video:street $R/pseudo_video:town $R/pseudo_video:indoor
       --person-weights 1 2 3 1 1 1 1 --half-body-prob 0.3)
VAL=(--val $C/fashion:val $R/vtest_teacher:val $C/lspet_split:holdout --val-report $D/fashion:val)
LONG=(--epochs 50 --samples-per-epoch 3000 --batch-size 32 --lr 1e-3 --seed 22)

# Ablations: fine-tuning from the shipped weights, equal budget, validated like the long run (LSPET holdout excluded:
# the shipped weights saw it).
PSEUDO=($R/pseudo_lspet:train $R/pseudo_video:street $R/pseudo_video:town $R/pseudo_video:indoor)
AB=(--init weights/lgm_pose_coco_256x192.pt --epochs 7 --samples-per-epoch 3000 --batch-size 32 --lr 5e-4 --seed 23
    --half-body-prob 0.3 --val $C/fashion:val $R/vtest_teacher:val --val-report $D/fashion:val)
# MPII from the clean base: the long run never saw the LSPET holdout, so its final weights (not best.pt, which the
# holdout helped choose) start the 16-joint model; LSPET-MPII's own val split picks best.pt, the holdout is the test.
BASE=${BASE:-runs/long/last.pt}
mpii_data() {
  [ -f $R/lspet_mpii/annot/holdout.json ] || $L mpii-convert --data $D/lspet --out $R/lspet_mpii
  [ -f $R/fashion_mpii/annot/train.json ] || $L mpii-convert --data $D/fashion:train --holdout 0 --val 0 --out $R/fashion_mpii
  [ -f $R/sports_mpii/annot/train.json ] || $L mpii-convert --data $D/sports --holdout 0 --val 0 --out $R/sports_mpii
}
MPII=(--config mpii_256x256 --dataset mpii --init-partial "$BASE"
      --data $R/lspet_mpii:train $R/fashion_mpii:train $R/sports_mpii:train --data-weights 0.75 0.15 0.1
      --val $R/lspet_mpii:val --epochs 8 --samples-per-epoch 2000 --batch-size 32 --lr 5e-4 --half-body-prob 0.3
      --seed 7)

cleaned() {  # the three human-labelled sets from folder $1
  echo "$1/lspet_split:train $1/fashion:train $1/sports:train"
}

run() {  # name, args...: resumes from runs/<name>/last.pt when it exists; EXTRA: more train args (e.g. --workers 1)
  local name=$1; shift
  # shellcheck disable=SC2086
  if [ -f runs/$name/last.pt ]; then $L train "$@" ${EXTRA:-} --out runs/$name --resume runs/$name/last.pt
  else $L train "$@" ${EXTRA:-} --out runs/$name; fi
}

for what in "$@"; do
  case $what in
    data) data ;;
    long) run long "${TRAIN[@]}" "${VAL[@]}" "${LONG[@]}" --foreground-weight 10 ;;
    long_mse) run long_mse "${TRAIN[@]}" "${VAL[@]}" "${LONG[@]}" ;;
    ab_base) run ab_base --data $R/lspet_split:train $D/fashion:train $D/sports:train --data-weights 0.5 0.3 0.2 \
      --draw-cap 0 "${AB[@]}" ;;
    ab_all) run ab_all "${TRAIN[@]}" "${AB[@]}" ;;
    ab_all_fg) run ab_all_fg "${TRAIN[@]}" "${AB[@]}" --foreground-weight 10 ;;
    ab_noboxes) run ab_noboxes --data $(cleaned $R/clean_noboxes) "${PSEUDO[@]}" --person-weights 1 2 3 1 1 1 1 "${AB[@]}" ;;
    ab_noconv) run ab_noconv --data $(cleaned $R/clean_noconv) "${PSEUDO[@]}" --person-weights 1 2 3 1 1 1 1 "${AB[@]}" ;;
    ab_nosampling) run ab_nosampling --data $(cleaned $C) "${PSEUDO[@]}" --data-weights 0.33 0.2 0.1 0.15 0.07 0.1 0.05 \
      --draw-cap 0 "${AB[@]}" ;;
    ab_nodistill) run ab_nodistill --data $(cleaned $C) --person-weights 1 2 3 "${AB[@]}" ;;
    mpii_clean) mpii_data; run mpii_clean "${MPII[@]}"
      for flip in "" --flip; do
        $L eval --dataset mpii --weights runs/mpii_clean/best.pt --data $R/lspet_mpii:holdout $flip \
          --out runs/mpii_clean/holdout$flip.json
      done ;;
    *) echo "unknown step $what" >&2; exit 2 ;;
  esac
done
