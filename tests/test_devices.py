"""Devices and precision at every front door: the flags, their errors in words before anything loads, bf16 and
--save-memory end to end on the CPU, and how an audit gives each worker (local process or Ray actor) a device."""

from __future__ import annotations

import json

import pytest
import torch

from framemark.audit.engines import batches, worker_devices
from framemark.audit.errors import AuditError
from framemark.audit.ray_engine import actor_plan
from framemark.errors import ModelError
from framemark.generator.models.base import check_device, execution_device

HAS_CUDA = torch.cuda.is_available()
COMMANDS = {"generate": ["generate", "a red ball", "-o", "never.mp4"], "verify": ["verify", "never.mp4"],
            "audit": ["audit", "never-a-folder", "--out", "never-out"], "serve": ["serve", "--no-auth"]}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_model_command_has_the_device_options(cli, command):
    shown = cli(command, "--help").output
    for flag in ("--device", "--dtype", "--save-memory"):
        assert flag in shown, (command, flag)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flags, words", [
    (["--device", "gpu"], "device must be cpu, cuda, cuda:N or mps (got 'gpu')"),
    (["--device", "cuda:x"], "device must be cpu, cuda, cuda:N or mps (got 'cuda:x')"),
    (["--dtype", "fp64"], "dtype must be one of fp32, bf16, fp16, got 'fp64'"),
    (["--dtype", "fp16"], "fp16 is for GPUs"),
])
def test_bad_device_or_dtype_fails_in_words_before_anything_loads(cli, command, flags, words, tmp_path):
    # the paths do not exist: the flags are refused before any file, key or model is looked at
    result = cli(*COMMANDS[command], *flags, home=tmp_path)
    assert result.exit_code == 2, result.output
    assert f"error: {words}" in result.output
    assert list(tmp_path.iterdir()) == []  # no key, no CA, no ledger made


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", COMMANDS)
def test_cuda_on_a_machine_without_a_gpu_is_refused_in_words(cli, command, tmp_path):
    result = cli(*COMMANDS[command], "--device", "cuda", home=tmp_path)
    assert result.exit_code == 2, result.output
    assert "error: device cuda asked for, but torch sees no CUDA GPU on this machine" in result.output


def test_check_device_names_what_is_wrong():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device("cpu", torch.bfloat16) == torch.device("cpu")
    # a device elsewhere (a Ray cluster's GPU nodes): the name and the precision are checked, not this machine
    assert check_device("cuda:3", torch.float16, here=False) == torch.device("cuda", 3)
    with pytest.raises(ModelError, match="fp16 is for GPUs"):
        check_device("cpu", torch.float16, here=False)
    if not HAS_CUDA:
        with pytest.raises(ModelError, match="no CUDA GPU"):
            check_device("cuda:0")
    else:
        with pytest.raises(ModelError, match="visible CUDA GPU"):
            check_device(f"cuda:{torch.cuda.device_count()}")


def test_execution_device_follows_an_offload_hook():
    """Under model CPU offload a component's weights wait on the CPU; its inputs must go where it will run."""
    from accelerate.hooks import CpuOffload, add_hook_to_module

    layer = torch.nn.Linear(2, 2)
    assert execution_device(layer) == torch.device("cpu")
    add_hook_to_module(layer, CpuOffload(execution_device="cuda:1"))
    assert next(layer.parameters()).device == torch.device("cpu")
    assert execution_device(layer) == torch.device("cuda", 1)


# ------------------------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def marked(tmp_path_factory, keyed_home, make_clip):
    home = keyed_home("devices")
    path = tmp_path_factory.mktemp("devices") / "marked.mp4"
    record = make_clip(path, "a red ball bouncing", home=home, seed=3, clip_id="00000000beef")
    return {"path": path, "home": home, "payload": record["watermark"]["payload"]}


def _verify(cli, marked, *flags) -> dict:
    result = cli("verify", marked["path"], "--json", "--no-classifier", *flags, home=marked["home"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]


def test_bf16_verify_runs_end_to_end_on_the_cpu(cli, marked):
    full = _verify(cli, marked)
    half = _verify(cli, marked, "--dtype", "bf16")
    assert half["verdict"] == full["verdict"] == "signed-synthetic"
    assert half["watermark"]["detected"] and half["watermark"]["p_value"] <= 1e-6
    assert half["watermark"]["payload"] == full["watermark"]["payload"] == marked["payload"]
    # bf16 weights change the inversion, not what it finds: the mark is still far above the threshold
    assert half["watermark"]["log10_p_value"] < -20


def test_save_memory_on_the_cpu_changes_nothing_for_clips_within_a_tile(cli, marked):
    """On the CPU --save-memory tiles and slices the VAE (no offload); a 128-pixel clip is one tile."""
    assert _verify(cli, marked, "--save-memory")["watermark"] == _verify(cli, marked)["watermark"]


def test_save_memory_is_safe_to_call_on_a_loaded_model(watermark_key):
    from framemark.detect.recovery import recover_watermark
    from framemark.generator.models import GenerationRequest, load_model
    from framemark.watermark import Payload, embed

    fresh = load_model()
    request = fresh.check_inputs(GenerationRequest("a red ball", steps=4))
    shape = fresh.latent_shape(request.frames, request.height, request.width)
    frames = fresh.sample(request, embed(watermark_key, Payload(7), shape, seed=0))
    before = recover_watermark(fresh, watermark_key, frames)
    fresh.save_memory()
    fresh.save_memory()  # twice: nothing more changes
    assert fresh.pipeline.vae.use_tiling and fresh.pipeline.vae.use_slicing
    assert fresh.device == torch.device("cpu")  # no offload off CUDA
    after = recover_watermark(fresh, watermark_key, frames)
    assert after.extraction.log10_p_value == before.extraction.log10_p_value


def test_serve_settings_carry_the_device_to_every_worker():
    from framemark.serve.settings import Settings

    settings = Settings(device="cuda:1", dtype="bf16", save_memory=True)
    options = Settings.from_env(settings.to_env()).runtime_options()
    assert (options.device, options.dtype, options.save_memory) == ("cuda:1", "bf16", True)
    assert (Settings().runtime_options().device, Settings().runtime_options().dtype) == ("cpu", "fp32")


# ------------------------------------------------------------------------------------------------ the audit

def test_local_workers_get_their_devices():
    # as today: one worker on the CPU, or as many as asked, all on the CPU
    assert worker_devices("cpu") == ["cpu"]
    assert worker_devices("cpu", workers=3) == ["cpu"] * 3
    # --device cuda: every visible GPU, one worker each; more workers share them in turn
    assert worker_devices("cuda", visible_gpus=4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert worker_devices("cuda", workers=3, visible_gpus=2) == ["cuda:0", "cuda:1", "cuda:0"]
    # one named GPU: every worker on it
    assert worker_devices("cuda:1", workers=2, visible_gpus=4) == ["cuda:1", "cuda:1"]
    # --devices: those, in turn
    assert worker_devices("cpu", ["cuda:2", "cuda:0"]) == ["cuda:2", "cuda:0"]
    assert worker_devices("cpu", ["cuda:2", "cuda:0"], workers=4) == ["cuda:2", "cuda:0", "cuda:2", "cuda:0"]
    with pytest.raises(AuditError, match="no CUDA GPU"):
        worker_devices("cuda", visible_gpus=0)


def test_ray_actors_ask_for_gpus_only_on_cuda():
    cluster = {"CPU": 16.0, "GPU": 4.0}
    assert actor_plan("cpu", cluster, workers=None, threads=2, gpus=1.0, jobs=100) == (8, 0.0, "cpu")
    # one actor per GPU; the actor sees only its own GPU, so its device is "cuda" whatever the driver named
    assert actor_plan("cuda", cluster, workers=None, threads=2, gpus=1.0, jobs=100) == (4, 1.0, "cuda")
    assert actor_plan("cuda:1", cluster, workers=None, threads=1, gpus=0.5, jobs=100) == (8, 0.5, "cuda")
    assert actor_plan("cuda", cluster, workers=2, threads=1, gpus=1.0, jobs=100) == (2, 1.0, "cuda")
    assert actor_plan("cuda", cluster, workers=None, threads=1, gpus=1.0, jobs=3) == (3, 1.0, "cuda")
    with pytest.raises(AuditError, match="has no GPU"):
        actor_plan("cuda", {"CPU": 16.0}, workers=None, threads=1, gpus=1.0, jobs=10)


def test_tasks_are_batched_in_order():
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert batches(list(range(3)), 1) == [[0], [1], [2]]


def test_audit_devices_flags_are_checked(cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    out = tmp_path / "out"
    for flags, words in [(["--devices", ","], "--devices needs at least one device"),
                         (["--devices", "cuda:0", "--device", "cuda"], "give --device or --devices, not both"),
                         (["--devices", "cuda:0", "--engine", "ray"], "--devices is for the local engine"),
                         (["--devices", "cpu,gpu"], "device must be cpu, cuda, cuda:N or mps (got 'gpu')")]:
        result = cli("audit", folder, "--out", out, *flags, home=tmp_path)
        assert result.exit_code == 2, (flags, result.output)
        assert f"error: {words}" in result.output, flags
