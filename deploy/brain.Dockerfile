# The brain: torch + transformer-lens. For a CUDA torch, build FROM an NVIDIA CUDA runtime image and
# install torch from the PyTorch CUDA index instead of the pinned CPU wheel.
FROM python:3.11-slim
WORKDIR /app
ENV NEUROJAM_CONFIG_DIR=/app/configs
COPY pyproject.toml README.md ./
COPY rig rig
COPY bridge bridge
COPY brain brain
COPY neurojam neurojam
COPY configs configs
RUN pip install --no-cache-dir "torch==2.13.0" && pip install --no-cache-dir ".[brain,stage]"
EXPOSE 5555 5556
CMD ["neurojam", "brain", "--config", "gpu"]
