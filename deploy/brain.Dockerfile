# The brain: torch + transformer-lens. For a CUDA torch, build FROM an NVIDIA CUDA runtime image and
# install torch from the PyTorch CUDA index instead of the pinned CPU wheel.
FROM python:3.11-slim
WORKDIR /app
ENV NEUROJAM_CONFIG_DIR=/app/configs
COPY pyproject.toml README.md ./
# -- files (deploy/images.py writes these lines) --
COPY brain brain
COPY bridge bridge
COPY configs configs
COPY core core
COPY neurojam neurojam
COPY recording recording
COPY rig rig
COPY stage stage
# -- end of files --
RUN pip install --no-cache-dir "torch==2.13.0" && pip install --no-cache-dir ".[brain,stage]"
EXPOSE 5555 5556
CMD ["neurojam", "brain", "--config", "gpu"]
