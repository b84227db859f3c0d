"""Microphone: the A-weighted sound level (LAeq per period) and the raw PCM stream for fire detection.

Transports, all raw PCM s16le mono at ``sample_rate_hz``:
    fifo  a named pipe (hw-sim's AudioSource, or a capture daemon), read with the loop's ``add_reader``
    file  a WAV (16-bit mono at the configured rate) or raw file, fed at real-time pace (replays, tests)
    alsa  ``arecord -q -D <device> -f S16_LE -r <rate> -c 1 -t raw`` as a subprocess (boards only)

Bytes are cut into blocks of ``block_s``; each block goes to the subscribers' queues and to the LevelMeter
(qrad_drivers.acoustics). ``read`` returns the level of the last complete period of ``period_s``:
    FAULT "no audio"              no block for two periods (dead microphone, writer hung)
    FAULT "silence: digital zero" a period of exact zeros (muted or unplugged MEMS microphone)
    FAULT "garbled"               the byte stream lost its sample alignment and was re-synchronised
    STALE "stuck"                 every block of the period repeats a recent block (a stuck DMA buffer)
    OUT_OF_RANGE "clipped"        more than 0.1 % of the samples at full scale: the level is a lower bound
End of stream (FIFO writer closed, end of file, arecord exited) makes ``read`` raise DriverError; the hub
then closes and reopens. Subscriptions survive the reopen.

Calibration: ``calibration_db`` is the SPL of a 0 dBFS sine. The default 120 dB suits a MEMS microphone of
-26 dBFS sensitivity at 94 dB SPL (e.g. INMP441, ICS-43434); calibrate with a 94 dB 1 kHz calibrator.
Alignment: a mis-aligned s16le stream reads as near full-scale noise; when a block louder than -20 dBFS and
not clipped has 20 dB less variance parsed one byte later, one byte is dropped (``status()["resyncs"]``).
A signal whose low bytes are all zero (8-bit audio scaled up) would fool this check; no microphone makes one.
While the bytes are random (a broken writer) nothing can tell them from loud noise: about 118 dB(A) is read.
"""

from __future__ import annotations

import asyncio
import math
import os
import stat
import wave
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from qrad_drivers.acoustics import CLIP_FRACTION, CLIP_LEVEL, FULL_SCALE, LevelMeter, PeriodLevel
from qrad_drivers.base import (ChannelSpec, Driver, DriverConfig, DriverError, Quality, Reading, check_range,
                               fault)

CALIBRATION_DB = 120.0
"""dB SPL of a 0 dBFS sine for a -26 dBFS / 94 dB SPL MEMS microphone; hw-sim's AudioSource uses the same."""
NO_AUDIO_PERIODS = 2
"""No block for this many periods is a FAULT."""
RESYNC_RATIO = 0.01
"""A block re-parsed one byte later with less than this fraction of the mean square means lost alignment."""
RESYNC_CHECK_MS = (FULL_SCALE / 10.0) ** 2
"""Alignment is checked only for blocks louder than -20 dBFS: a mis-aligned stream is near full scale."""
RESYNC_CHECK_PEAK = 2 * FULL_SCALE / 10.0
"""A block whose peak-to-peak span is below this cannot reach RESYNC_CHECK_MS of variance."""
READ_CHUNK_BYTES = 65536
ARECORD = "arecord"

Block = tuple[float, np.ndarray]
"""(loop-clock time at which the block's last sample arrived, int16 samples, read-only)."""


class AudioConfig(DriverConfig):
    """``source = "fifo"`` with ``path``, ``"file"`` with ``path``, or ``"alsa"`` with ``device``."""

    type: Literal["audio"] = "audio"
    source: Literal["fifo", "file", "alsa"] = "fifo"
    path: Path | None = None
    device: str | None = None
    sample_rate_hz: int = Field(16000, ge=8000, le=96000)
    block_s: float = Field(0.125, ge=0.01, le=1.0)
    calibration_db: float = Field(CALIBRATION_DB, ge=60.0, le=160.0, description="dB SPL at 0 dBFS")

    @model_validator(mode="after")
    def _transport_fields(self) -> AudioConfig:
        if self.source == "alsa" and self.path is not None:
            raise ValueError("audio source 'alsa' takes a device, not a path")
        if self.source != "alsa" and (self.path is None or self.device is not None):
            raise ValueError(f"audio source {self.source!r} takes a path and no device")
        if self.period_s is not None and self.period_s < self.block_s:
            raise ValueError(f"period_s {self.period_s} is shorter than block_s {self.block_s}")
        return self


class AudioDriver(Driver):
    """One microphone: a ``sound_level`` channel in dB(A) and a subscribable stream of int16 blocks."""

    type_name = "audio"
    config_model = AudioConfig
    nominal_period_s = 1.0
    cfg: AudioConfig

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        self.block_n = max(1, round(self.cfg.block_s * self.cfg.sample_rate_hz))
        self.blocks_per_period = max(1, round(self.period_s / self.cfg.block_s))
        self._subscribers: dict[asyncio.Queue[Block], int] = {}
        self._reset()
        self.resyncs = 0
        return (self.spec("", "sound_level", "dB(A)", 0.0, 140.0),)

    def _reset(self) -> None:
        self._meter = LevelMeter(self.cfg.sample_rate_hz, self.block_n, self.blocks_per_period,
                                 self.cfg.calibration_db)
        self._pending = bytearray()
        self._last: PeriodLevel | None = None
        self._last_block_t = -math.inf
        self._lost: str | None = None
        self._opened = False
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self.blocks = 0

    # -- the raw stream -------------------------------------------------------------------------------

    def subscribe(self, maxsize_blocks: int = 64) -> asyncio.Queue[Block]:
        """A bounded queue of (t_s, int16 block) tuples. When full, the oldest block is dropped and counted
        (``dropped(queue)``): a slow consumer loses the past, never the present, and never stalls the reader.
        """
        queue: asyncio.Queue[Block] = asyncio.Queue(maxsize=maxsize_blocks)
        self._subscribers[queue] = 0
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Block]) -> None:
        """Stop feeding ``queue``; unknown queues are ignored."""
        self._subscribers.pop(queue, None)

    def dropped(self, queue: asyncio.Queue[Block]) -> int:
        """How many blocks ``queue`` lost because it was full."""
        return self._subscribers.get(queue, 0)

    def _publish(self, block: Block) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self._subscribers[queue] += 1
            queue.put_nowait(block)

    # -- transports -----------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.close()
        self._reset()
        loop = asyncio.get_running_loop()
        self._last_block_t = loop.time()
        name = f"audio-{self.cfg.name}"
        if self.cfg.source == "fifo":
            self._open_fifo(loop)
        elif self.cfg.source == "file":
            data = await asyncio.to_thread(self._load_file)
            self._task = asyncio.create_task(self._pace_file(data), name=name)
        else:
            await self._start_arecord()
            self._task = asyncio.create_task(self._pump_arecord(), name=name)
        self._opened = True

    def _open_fifo(self, loop: asyncio.AbstractEventLoop) -> None:
        path = self.cfg.path
        assert path is not None
        try:
            if not stat.S_ISFIFO(os.stat(path).st_mode):
                raise DriverError(f"{path} is not a FIFO")
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise DriverError(f"cannot open audio FIFO {path}: {exc}") from exc
        loop.add_reader(self._fd, self._on_fifo_readable)

    def _on_fifo_readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            return self._end_of_stream(f"audio FIFO {self.cfg.path}: {exc}")
        if not data:
            return self._end_of_stream(f"audio FIFO {self.cfg.path}: writer closed")
        self._feed(data)

    def _load_file(self) -> bytes:
        path = self.cfg.path
        assert path is not None
        try:
            if path.suffix.lower() != ".wav":
                return path.read_bytes()
            with wave.open(str(path), "rb") as wav:
                shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
                if shape != (1, 2, self.cfg.sample_rate_hz):
                    raise DriverError(f"{path}: (channels, bytes, rate) {shape}, want (1, 2, "
                                      f"{self.cfg.sample_rate_hz})")
                return wav.readframes(wav.getnframes())
        except (OSError, EOFError, wave.Error) as exc:
            raise DriverError(f"cannot read audio file {path}: {exc}") from exc

    async def _pace_file(self, data: bytes) -> None:
        loop, step = asyncio.get_running_loop(), self.block_n * 2
        start = loop.time()
        for k, offset in enumerate(range(0, len(data), step)):
            await asyncio.sleep(max(0.0, start + (k + 1) * self.cfg.block_s - loop.time()))
            self._feed(data[offset : offset + step])
        self._end_of_stream(f"audio file {self.cfg.path}: end of file")

    async def _start_arecord(self) -> None:
        cmd = [ARECORD, "-q", "-D", self.cfg.device or "default", "-f", "S16_LE",
               "-r", str(self.cfg.sample_rate_hz), "-c", "1", "-t", "raw"]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise DriverError(f"cannot start {' '.join(cmd)}: {exc}") from exc

    async def _pump_arecord(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None and self._proc.stderr is not None
        while data := await self._proc.stdout.read(READ_CHUNK_BYTES):
            self._feed(data)
        err = (await self._proc.stderr.read(4096)).decode(errors="replace").strip()
        code = await self._proc.wait()
        self._end_of_stream(f"arecord -D {self.cfg.device} exited with {code}: {err[-200:]}")

    def _end_of_stream(self, reason: str) -> None:
        self._lost = reason
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    async def close(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._proc is not None:
            await _stop_process(self._proc)
            self._proc = None
        self._opened = False

    # -- blocks and levels ----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._pending += data
        size = self.block_n * 2
        while len(self._pending) >= size:
            raw = bytes(self._pending[:size])
            del self._pending[:size]
            block = np.frombuffer(raw, dtype="<i2")
            if self._misaligned(block, raw):
                self._pending[:0] = raw[1:]
                self.resyncs += 1
                self._meter.mark_garbled()
                continue
            self._on_block(block)

    @staticmethod
    def _misaligned(block: np.ndarray, raw: bytes) -> bool:
        """True when the block parsed one byte later has far less AC power (checked for loud blocks only;
        clipped blocks are skipped: runs of 0x7FFF re-parse as -129 and would look aligned one byte later)."""
        peak, trough = int(block.max()), int(block.min())
        if peak - trough < RESYNC_CHECK_PEAK or peak >= CLIP_LEVEL or trough <= -CLIP_LEVEL:
            return False  # too quiet to be mis-aligned (cheap test first), or clipped
        power = float(np.var(block))
        if power < RESYNC_CHECK_MS:
            return False
        return float(np.var(np.frombuffer(raw[1:-1], dtype="<i2"))) < RESYNC_RATIO * power

    def _on_block(self, block: np.ndarray) -> None:
        t_s = asyncio.get_running_loop().time()
        self._last_block_t = t_s
        self.blocks += 1
        self._publish((t_s, block))
        level = self._meter.add(block)
        if level is not None:
            self._last = level

    async def read(self, t_s: float) -> list[Reading]:
        if self._lost is not None:
            raise DriverError(self._lost)
        if not self._opened:
            raise DriverError(f"audio {self.cfg.name} is not open")
        return [self._reading(self.channels[0], t_s)]

    def _reading(self, spec: ChannelSpec, t_s: float) -> Reading:
        silent_s = t_s - self._last_block_t
        if silent_s > NO_AUDIO_PERIODS * self.period_s:
            return fault(spec, t_s, f"no audio for {silent_s:.1f} s from {self._where()}")
        level = self._last
        if level is None:
            return Reading(spec.name, math.nan, spec.unit, t_s, Quality.STALE, "no complete period yet")
        if level.digital_zero:
            return fault(spec, t_s, "silence: digital zero (muted or unplugged microphone)")
        if level.garbled:
            return fault(spec, t_s, "garbled: the stream lost its byte alignment and was re-synchronised")
        if level.repeated:
            reason = "stuck: every block of the period repeats a recent block"
            return Reading(spec.name, level.laeq_db, spec.unit, t_s, Quality.STALE, reason)
        if level.clipped_fraction > CLIP_FRACTION:
            reason = f"clipped: {level.clipped} of {level.samples} samples at full scale"
            return Reading(spec.name, level.laeq_db, spec.unit, t_s, Quality.OUT_OF_RANGE, reason)
        return check_range(spec, level.laeq_db, t_s)

    def _where(self) -> str:
        return f"arecord -D {self.cfg.device}" if self.cfg.source == "alsa" else str(self.cfg.path)

    def status(self) -> dict[str, Any]:
        """Plain JSON values for the CLI and MQTT."""
        last = self._last
        return {
            "source": self.cfg.source, "where": self._where(), "open": self._opened, "lost": self._lost,
            "blocks": self.blocks, "resyncs": self.resyncs, "subscribers": len(self._subscribers),
            "dropped_blocks": sum(self._subscribers.values()),
            "laeq_db": None if last is None or not math.isfinite(last.laeq_db) else round(last.laeq_db, 1),
        }


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    """Terminate, then kill after 2 s; never raises."""
    if proc.returncode is None:
        try:
            proc.terminate()
            async with asyncio.timeout(2.0):
                await proc.wait()
        except ProcessLookupError:
            return
        except TimeoutError:
            proc.kill()
            await proc.wait()
