"""The Python API (docs/api.md): the documented example runs as written — it marks latents for the user's own
pipeline object, samples with that pipeline, signs and records the file, and verifies it — and the calls refuse
what they cannot do in words."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from framemark import api, media, provenance
from framemark.errors import FramemarkError, ModelError
from framemark.generator.models import DEFAULT_MODEL_DIR, GenerationRequest
from framemark.watermark import Payload

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
FIXED_CLIP_ID = 0x00C0FFEE0AA1  # with conftest's fixed key: deterministic detection (see conftest)


def example() -> str:
    """The fenced Python block under "## Example" in docs/api.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Example"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def ran(tmp_path_factory, keyed_home):
    """The docs example, executed as a user would run it: in a folder of its own, with this machine's key
    (the fixed one) and a payload drawn by ``Payload.random`` (pinned here, so detection is deterministic)."""
    folder, home = tmp_path_factory.mktemp("api-example"), keyed_home("api")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("FRAMEMARK_HOME", str(home))
        mp.setattr(Payload, "random", classmethod(lambda cls, rng=None: cls(FIXED_CLIP_ID)))
        namespace: dict = {"__name__": "__main__"}
        exec(compile(example(), str(DOC), "exec"), namespace)
    return {"ns": namespace, "folder": folder, "home": home}


def test_the_example_marks_signs_records_and_verifies_with_the_users_pipeline(ran, watermark_key):
    ns = ran["ns"]
    assert type(ns["pipe"]).__name__ == "WanPipeline" and ns["model"].pipeline is ns["pipe"]
    payload, clip, verdict = ns["payload"], ns["clip"], ns["verdict"]
    path = ran["folder"] / "clip.mp4"
    assert payload == Payload(FIXED_CLIP_ID)
    # signed in place: the file now carries a Trusted manifest naming the model and the payload
    reading = provenance.read_file(path, (Path(ran["home"] / "c2pa-ca.pem").read_bytes(),))
    assert reading["state"] == "Trusted"
    manifest = reading["manifest"]
    assert manifest["soft_binding"]["value"] == payload.hex
    assert manifest["generation"]["model"] == clip.model and clip.model["name"] == "framemark-wan-tiny"
    assert len(clip.model["weights_sha256"]) == 64 and clip.model["family"] == "wan"
    assert clip.watermark == {"key_id": watermark_key.key_id, "payload": payload.hex, "clip_id": payload.clip_hex}
    # recorded: one ledger row with the payload and the model's weights hash
    db = sqlite3.connect(clip.ledger["path"])
    rows = db.execute("SELECT payload, key_id, model_name, model_sha256, manifest_label FROM clips").fetchall()
    db.close()
    assert rows == [(payload.hex, watermark_key.key_id, "framemark-wan-tiny", clip.model["weights_sha256"],
                     clip.c2pa["manifest_label"])]
    # verified: detected with the exact payload, read under the user's model
    mark = verdict.watermark
    assert mark.detected and mark.p_value <= 1e-6 and mark.payload == payload.hex
    assert mark.model == clip.model and mark.models_total == 1
    assert verdict.verdict == "signed-synthetic" and verdict.errors == []
    assert json.loads(json.dumps(verdict.to_dict()))["watermark"]["model"] == clip.model


def test_the_latents_are_the_ones_generate_marks(ran, watermark_key):
    """Same request, key and payload: the same z_T as `framemark generate` (generator.emit)."""
    from framemark.generator.emit import watermarked_latents

    ns = ran["ns"]
    expected = watermarked_latents(ns["model"], ns["request"], watermark_key, ns["payload"])
    assert ns["latents"].shape == expected.shape == ns["model"].latent_shape(17, 128, 128)
    assert bool((ns["latents"].cpu() == expected).all())


def test_verify_without_the_key_checks_c2pa_only(ran, tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMEMARK_HOME", str(tmp_path / "keyless"))
    verdict = api.verify(ran["folder"] / "clip.mp4", classifier=False)
    assert verdict.watermark is None and "no watermark key" in " ".join(verdict.errors)
    assert verdict.c2pa.state == "Valid"  # signed, by a CA this home does not trust


def test_a_file_that_is_not_the_requests_clip_is_refused(ran, tmp_path, watermark_key):
    ns = ran["ns"]
    short = tmp_path / "short.mp4"
    media.write_video(short, ns["frames"][:9], fps=ns["request"].fps)
    with pytest.raises(FramemarkError, match="has 9 frames of 128x128, but the request is for 17 frames"):
        api.sign_and_record(short, ns["model"], ns["request"], payload=ns["payload"], key=watermark_key)
    slow = tmp_path / "slow.mp4"
    media.write_video(slow, ns["frames"], fps=4)
    with pytest.raises(FramemarkError, match="plays at 4 fps"):
        api.sign_and_record(slow, ns["model"], ns["request"], payload=ns["payload"], key=watermark_key)
    with pytest.raises(FramemarkError, match="payload must be"):
        api.marked_latents(ns["model"], ns["request"], payload="00c0ffee0aa1", key=watermark_key)


def test_pipelines_framemark_cannot_name_are_refused_in_words(ran):
    class StableDiffusionPipeline:
        pass

    with pytest.raises(ModelError, match="StableDiffusionPipeline is not a pipeline framemark supports"):
        api.model_from_pipeline(StableDiffusionPipeline())
    pipe = ran["ns"]["pipe"]
    with pytest.raises(ModelError, match="pass folder="):
        api.model_from_pipeline(pipe, folder="/nonexistent/model")
    assert api.model_from_pipeline(pipe, folder=DEFAULT_MODEL_DIR).identity == ran["ns"]["model"].identity
    model = ran["ns"]["model"]
    assert api.model_from_pipeline(model) is model
    with pytest.raises(FramemarkError, match="frames must be"):
        api.marked_latents(model, GenerationRequest(prompt="x", frames=18), payload=Payload(1))


def test_a_bad_prompt_policy_leaves_the_users_file_as_it_was(ran, tmp_path, watermark_key):
    """A bad prompt policy fails before anything is read or written; the user's file stays as it was."""
    ns = ran["ns"]
    path = tmp_path / "mine.mp4"
    media.write_video(path, np.asarray(ns["frames"]), fps=ns["request"].fps)
    before = path.read_bytes()
    with pytest.raises(FramemarkError, match="prompt policy"):
        api.sign_and_record(path, ns["model"], ns["request"], payload=ns["payload"], key=watermark_key,
                            prompt_policy="loud")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine.mp4"]
