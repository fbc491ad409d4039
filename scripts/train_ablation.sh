#!/usr/bin/env bash
# Issue 12's same-budget ablation: A = the shipped recipe's data (lspet minus its held-out 700 images, fashion,
# sports, teacher fill-ins), B = A + teacher pseudo-labels of unannotated persons and video frames + COCO-like
# augmentation (low resolution, occlusion, photometric). Same seed, same init (the shipped weights), same number
# of crops; one core each. Usage: scripts/train_ablation.sh [A|B|both] (resumes from runs/ab_X/last.pt).
# Data: ../shared/data (DATA=...), vtest.avi from Debian's opencv-doc (VTEST=...); derived data under runs/data.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} YOLO_OFFLINE=1
L=".venv/bin/lgm-pose"
D=${DATA:-../shared/data}
R=runs/data
VTEST=${VTEST:-/tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi}
[ -d $R/lspet_split ] || $L holdout --data $D/lspet --last 700 --out $R/lspet_split
[ -f $R/teacher/lspet.json ] || $L teacher --data $R/lspet_split --split train --out $R/teacher/lspet.json --imgsz 320
[ -f $R/teacher/sports.json ] || $L teacher --data $D/sports --out $R/teacher/sports.json
[ -f $R/pseudo_lspet/annotations/person_keypoints_train.json ] || \
  $L pseudo-label --data $R/lspet_split:train --imgsz 320 --out $R/pseudo_lspet
[ -f $R/pseudo_video/annotations/person_keypoints_train.json ] || \
  $L pseudo-label --video $D/videos/street_pedestrians.mp4 --every 2 --out $R/pseudo_video
[ -f $R/pseudo_video/annotations/person_keypoints_town.json ] || \
  $L pseudo-label --video $D/videos/towncentre_pedestrians.mp4 --every 1 --imgsz 1280 --split town --out $R/pseudo_video
[ -f $R/pseudo_video/annotations/person_keypoints_vtest.json ] || \
  $L pseudo-label --video "$VTEST" $D/videos/one_person_indoor.mp4 --every 5 --imgsz 960 --split vtest --out $R/pseudo_video
COMMON=(--val $D/fashion:val $R/lspet_split:holdout --epochs 12 --samples-per-epoch 800 --batch-size 32
        --lr 5e-4 --seed 3 --workers 1 --half-body-prob 0.5)
run() {  # name, extra args...
  local name=$1; shift
  if [ -f runs/$name/last.pt ]; then $L train "$@" "${COMMON[@]}" --out runs/$name --resume runs/$name/last.pt
  else $L train "$@" "${COMMON[@]}" --out runs/$name --init weights/lgm_pose_coco_256x192.pt; fi
}
which=${1:-both}
if [ "$which" != B ]; then
  run ab_A --data $R/lspet_split:train $D/fashion:train $D/sports --data-weights 0.5 0.3 0.2 \
    --teacher $R/teacher/lspet.json - $R/teacher/sports.json &
fi
if [ "$which" != A ]; then
  run ab_B --data $R/lspet_split:train $D/fashion:train $D/sports $R/pseudo_lspet:train $R/pseudo_video:train \
    $R/pseudo_video:town $R/pseudo_video:vtest --data-weights 0.33 0.2 0.1 0.1 0.12 0.08 0.07 \
    --teacher $R/teacher/lspet.json - $R/teacher/sports.json - - - - \
    --lowres-prob 0.3 --occlusion-prob 0.3 --photometric-prob 0.5 &
fi
wait
