"""Unit tests of request validation: POST /pose parameters and boxes, and the evaluation data-root guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.errors import BadBoxes, BadDataset, BadParameter, BadPath
from app.core.settings import Settings
from app.evaluation.spec import EvalRequest, build_spec, ensure_inside, resolve_in_root
from app.pipeline.request import parse_boxes, parse_params

pytestmark = pytest.mark.unit
SETTINGS = Settings(max_persons=20)


def test_boxes_parsed_with_default_scores() -> None:
    boxes, scores = parse_boxes("[[1, 2, 30, 40, 0.5], [5, 5, 6, 9]]", 20)
    np.testing.assert_array_equal(boxes, [[1, 2, 30, 40], [5, 5, 6, 9]])
    np.testing.assert_array_equal(scores, [0.5, 1.0])


@pytest.mark.parametrize("text", ["[[1, 2, 3", "{}", "[[1, 2, 3]]", "[[5, 5, 1, 9]]", '[["a", 1, 2, 3]]',
                                  "[[1, 2, 3, 4, true]]", "[[0, 0, 1e400, 4]]", "[" * 100_000 + "]" * 100_000,
                                  "[[0, 0, " + "9" * 5000 + ", 4]]"])
def test_bad_boxes_refused(text: str) -> None:
    with pytest.raises(BadBoxes):
        parse_boxes(text, 20)


def test_too_many_boxes_refused() -> None:
    with pytest.raises(BadBoxes, match="exceed"):
        parse_boxes(str([[0, 0, 1, 1]] * 21), 20)


def test_params_defaults_and_bounds() -> None:
    params = parse_params({}, SETTINGS)
    assert (params.det_conf, params.kpt_thr, params.max_persons, params.boxes) == (0.25, 0.3, 20, None)
    assert parse_params({"max_persons": "3", "det_conf": "0.5"}, SETTINGS).max_persons == 3


@pytest.mark.parametrize("raw", [{"max_persons": "21"}, {"det_conf": "-0.1"}, {"kpt_thr": "abc"},
                                 {"format": "xml"}, {"max_persons": "1.7"}, {"det_conf": "nan"},
                                 {"max_persons": "9" * 5000}, {"kpt_thr": "inf"}])
def test_params_out_of_bounds_refused(raw: dict[str, str]) -> None:
    with pytest.raises(BadParameter):
        parse_params(raw, SETTINGS)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    data = tmp_path / "root"
    (data / "set" / "annotations").mkdir(parents=True)
    (data / "set" / "images" / "val").mkdir(parents=True)
    (data / "set" / "annotations" / "person_keypoints_val.json").write_text("{}")
    (tmp_path / "outside").mkdir()
    (data / "escape").symlink_to(tmp_path / "outside")
    return data


def test_path_guard_accepts_paths_inside(root: Path) -> None:
    assert resolve_in_root(root, "set", "dataset") == (root / "set").resolve()
    spec = build_spec("coco", EvalRequest(dataset="set"), root, 0.25)
    assert spec.ann_file == (root / "set" / "annotations" / "person_keypoints_val.json").resolve()


@pytest.mark.parametrize("rel", ["/etc", "../root", "set/../../x", "~/x", "C:/x", "", "a\\b", "escape"])
def test_path_guard_refuses_escapes(root: Path, rel: str) -> None:
    with pytest.raises(BadPath):
        resolve_in_root(root, rel, "dataset")


def test_path_guard_refuses_symlinked_file(root: Path, tmp_path: Path) -> None:
    (tmp_path / "outside" / "boxes.json").write_text("[]")
    with pytest.raises(BadPath):
        ensure_inside(root, root / "escape" / "boxes.json", "boxes", "escape/boxes.json")


def test_missing_dataset_is_a_bad_dataset(root: Path) -> None:
    with pytest.raises(BadDataset):
        build_spec("coco", EvalRequest(dataset="nothing"), root, 0.25)


@pytest.mark.parametrize("name", ["/etc/hostname", "../x.jpg", "a/../../x.jpg", "~/x.jpg", "a\\b.jpg", ""])
def test_image_file_names_stay_in_their_folder(tmp_path: Path, name: str) -> None:
    from model.data.images import image_path

    with pytest.raises(ValueError, match="outside the image folder"):
        image_path(tmp_path, name)
    assert image_path(tmp_path, "sub/x.jpg") == tmp_path / "sub" / "x.jpg"
