"""A stand-in for the RPi.GPIO module: records every call and lets tests fire edges.

Only the API surface neurojam uses, with RPi.GPIO's names and constants, so
the real `rpi` backend code runs in the test suite.
"""

BCM, BOARD = 11, 10
IN, OUT = 1, 0
HIGH, LOW = 1, 0
PUD_UP, PUD_DOWN, PUD_OFF = 22, 21, 20
RISING, FALLING, BOTH = 31, 32, 33

calls: list[tuple] = []
levels: dict[int, int] = {}
callbacks: dict[int, object] = {}
mode = None


def reset() -> None:
    global mode
    calls.clear()
    levels.clear()
    callbacks.clear()
    mode = None


def setwarnings(flag):
    calls.append(("setwarnings", flag))


def setmode(m):
    global mode
    mode = m
    calls.append(("setmode", m))


def setup(pin, direction, pull_up_down=PUD_OFF, initial=None):
    if mode is None:
        raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)")
    calls.append(("setup", pin, direction, pull_up_down, initial))
    if direction == IN:
        levels[pin] = HIGH if pull_up_down == PUD_UP else LOW
    else:
        levels[pin] = initial if initial is not None else LOW


def input(pin):  # noqa: A001 - RPi.GPIO's name
    return levels[pin]


def output(pin, value):
    calls.append(("output", pin, value))
    levels[pin] = value


def add_event_detect(pin, edge, callback=None, bouncetime=None):
    calls.append(("add_event_detect", pin, edge, bouncetime))
    callbacks[pin] = callback


def remove_event_detect(pin):
    calls.append(("remove_event_detect", pin))
    callbacks.pop(pin, None)


def cleanup(pins=None):
    calls.append(("cleanup", pins))


def drive(pin, level):
    """Test helper: the wire changes level; RPi.GPIO would call back from its thread."""
    if levels.get(pin) != level:
        levels[pin] = level
        if pin in callbacks:
            callbacks[pin](pin)
