"""GPIO pins over swappable backends (pin factories, as in gpiozero).

Devices (pads, the treat dispenser) never touch hardware; they ask a factory
for pins. ``sim`` simulates inputs (:meth:`SimInputPin.drive`) and records
every output change with its time, so tests count treat pulses. ``rpi`` talks
to the RPi.GPIO API (also on a Pi 5 through the rpi-lgpio shim).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Callable, Literal

from core.errors import DeviceError

Pull = Literal["up", "down", "off"]
EdgeCallback = Callable[[bool, float], None]
"""Called with (new level, monotonic time) on every edge."""


class InputPin(ABC):
    def __init__(self, number: int) -> None:
        self.number = number
        self._callbacks: list[EdgeCallback] = []

    def on_edge(self, callback: EdgeCallback) -> None:
        self._callbacks.append(callback)

    def _fire(self, level: bool, t: float) -> None:
        for cb in self._callbacks:
            cb(level, t)

    @abstractmethod
    def read(self) -> bool: ...

    def close(self) -> None:
        self._callbacks.clear()


class OutputPin(ABC):
    def __init__(self, number: int) -> None:
        self.number = number

    @abstractmethod
    def write(self, level: bool) -> None: ...

    def close(self) -> None:
        self.write(False)


class PinFactory(ABC):
    name = "abstract"

    @abstractmethod
    def input_pin(self, number: int, pull: Pull = "up") -> InputPin: ...

    @abstractmethod
    def output_pin(self, number: int, initial: bool = False) -> OutputPin: ...

    def close(self) -> None:
        pass


# -- sim -------------------------------------------------------------------------

class SimInputPin(InputPin):
    def __init__(self, number: int, pull: Pull, clock: Callable[[], float]) -> None:
        super().__init__(number)
        self.level = pull == "up"  # an open foil pad floats to the pull
        self.clock = clock

    def read(self) -> bool:
        return self.level

    def drive(self, level: bool, t: float | None = None) -> None:
        """Set the pin as wiring would; fires edge callbacks if it changed."""
        if level != self.level:
            self.level = level
            self._fire(level, self.clock() if t is None else t)


class SimOutputPin(OutputPin):
    def __init__(self, number: int, initial: bool, clock: Callable[[], float]) -> None:
        super().__init__(number)
        self.clock = clock
        self.level = initial
        self.history: list[tuple[float, bool]] = [(clock(), initial)]
        self._lock = threading.Lock()

    def write(self, level: bool) -> None:
        with self._lock:
            if level != self.level:
                self.level = level
                self.history.append((self.clock(), level))

    def pulses(self) -> list[float]:
        """Times of every rising edge."""
        return [t for (t, lvl), (_, prev) in zip(self.history[1:], self.history) if lvl and not prev]


class SimPinFactory(PinFactory):
    name = "sim"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.inputs: dict[int, SimInputPin] = {}
        self.outputs: dict[int, SimOutputPin] = {}

    def input_pin(self, number: int, pull: Pull = "up") -> SimInputPin:
        pin = self.inputs[number] = SimInputPin(number, pull, self.clock)
        return pin

    def output_pin(self, number: int, initial: bool = False) -> SimOutputPin:
        pin = self.outputs[number] = SimOutputPin(number, initial, self.clock)
        return pin


# -- RPi.GPIO --------------------------------------------------------------------

class RPiInputPin(InputPin):
    def __init__(self, gpio, number: int, pull: Pull) -> None:
        super().__init__(number)
        self._gpio = gpio
        pud = {"up": gpio.PUD_UP, "down": gpio.PUD_DOWN, "off": gpio.PUD_OFF}[pull]
        gpio.setup(number, gpio.IN, pull_up_down=pud)
        # Debouncing is ours (rig.pads.Debouncer): RPi.GPIO's bouncetime drops release edges.
        gpio.add_event_detect(number, gpio.BOTH, callback=self._edge)

    def _edge(self, channel: int) -> None:
        self._fire(bool(self._gpio.input(channel)), time.monotonic())

    def read(self) -> bool:
        return bool(self._gpio.input(self.number))

    def close(self) -> None:
        super().close()
        self._gpio.remove_event_detect(self.number)


class RPiOutputPin(OutputPin):
    def __init__(self, gpio, number: int, initial: bool) -> None:
        super().__init__(number)
        self._gpio = gpio
        gpio.setup(number, gpio.OUT, initial=gpio.HIGH if initial else gpio.LOW)

    def write(self, level: bool) -> None:
        self._gpio.output(self.number, self._gpio.HIGH if level else self._gpio.LOW)


class RPiPinFactory(PinFactory):
    name = "rpi"

    def __init__(self, gpio_module=None) -> None:
        if gpio_module is None:
            try:
                import RPi.GPIO as gpio_module  # type: ignore[no-redef]
            except (ImportError, RuntimeError) as exc:
                raise DeviceError(
                    "RPi.GPIO is not available here; use gpio.backend: sim (or --set rig.gpio.backend=sim). "
                    "On a Raspberry Pi install it with `pip install RPi.GPIO` (Pi 5: `pip install rpi-lgpio`)."
                ) from exc
        self._gpio = gpio_module
        self._gpio.setwarnings(False)
        self._gpio.setmode(self._gpio.BCM)
        self._pins: list[int] = []

    def input_pin(self, number: int, pull: Pull = "up") -> RPiInputPin:
        self._pins.append(number)
        return RPiInputPin(self._gpio, number, pull)

    def output_pin(self, number: int, initial: bool = False) -> RPiOutputPin:
        self._pins.append(number)
        return RPiOutputPin(self._gpio, number, initial)

    def close(self) -> None:
        if self._pins:
            self._gpio.cleanup(self._pins)
            self._pins = []


def pin_factory(backend: str, clock: Callable[[], float] = time.monotonic) -> PinFactory:
    if backend == "sim":
        return SimPinFactory(clock)
    if backend == "rpi":
        return RPiPinFactory()
    raise DeviceError(f"unknown GPIO backend {backend!r}: use 'sim' or 'rpi'.")
