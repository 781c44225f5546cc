"""Pads that play the owner's own recordings (wav, ogg, mp3) through pygame's mixer.

Optional (``pip install neurojam[audio]``). Sounds load once at start-up so
a press only starts playback. SDL picks the audio device; tests set
``SDL_AUDIODRIVER=dummy`` (or ``disk``).
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import DeviceError


class SamplePlayer:
    def __init__(self, files: dict[int, str], channels: int = 16) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError as exc:
            raise DeviceError("a pad plays an audio file but pygame is missing: `pip install neurojam[audio]`.") from exc
        self._pygame = pygame
        try:
            pygame.mixer.init(frequency=44100, buffer=256)
        except pygame.error as exc:
            raise DeviceError(f"cannot open an audio device for pad samples ({exc}). "
                              f"Set SDL_AUDIODRIVER (alsa, pulse, pipewire) or check `aplay -l`.") from exc
        pygame.mixer.set_num_channels(channels)
        self.sounds = {}
        for pad, path in files.items():
            p = Path(path).expanduser()
            if not p.exists():
                raise DeviceError(f"pad {pad}: sound file {p} not found (rig.pads[{pad}].sound.file).")
            try:
                self.sounds[pad] = pygame.mixer.Sound(str(p))
            except pygame.error as exc:
                raise DeviceError(f"pad {pad}: cannot load {p} ({exc}); use wav, ogg or mp3.") from exc
        self.played = 0

    def play(self, pad: int) -> bool:
        sound = self.sounds.get(pad)
        if sound is None:
            return False
        sound.play()
        self.played += 1
        return True

    def length_s(self, pad: int) -> float:
        return self.sounds[pad].get_length()

    def close(self) -> None:
        self._pygame.mixer.quit()
