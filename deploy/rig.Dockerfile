# The rig, for a Raspberry Pi (arm64): no torch, ever.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libasound2 libjack-jackd2-0 gcc \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NEUROJAM_CONFIG_DIR=/app/configs
COPY pyproject.toml README.md ./
# -- files (deploy/images.py writes these lines) --
COPY brain/__init__.py brain/__init__.py
COPY brain/config.py brain/config.py
COPY bridge bridge
COPY configs configs
COPY core core
COPY neurojam neurojam
COPY recording recording
COPY rig rig
COPY stage/__init__.py stage/__init__.py
COPY stage/config.py stage/config.py
# -- end of files --
RUN pip install --no-cache-dir ".[rig,audio]"
CMD ["neurojam", "rig", "--config", "pi"]
