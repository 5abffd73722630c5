# The studio worker image: `studio worker --queue Q` in a container (docs/cloud.md, "Worker image").
#
#   docker build -t studioml/studio-worker:0.1.0 .                                  # CPU
#   docker build -t studioml/studio-worker:0.1.0-cuda \
#     --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 .              # CUDA
#   studio start remote worker --queue Q [--gpus]                                   # runs it
#
# No credential is ever part of the image: the worker takes its token (and any cloud
# credentials) from the environment `docker run -e NAME` passes, or from a secret store
# (`--token-from`). Base your own image on this one (FROM studioml/studio-worker:0.1.0) to add
# the packages your experiments need, so that workers need not install them per experiment.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG STUDIO_EXTRAS=aws,gcp,postgres,s3,gcs,remote
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STUDIOML_HOME=/root/.studioml \
    PATH=/opt/studio/bin:$PATH
# git for experiments' git capture; python3 + venv only where the base has none (CUDA images).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
      $(command -v python3 >/dev/null 2>&1 || echo python3 python3-venv python3-pip) \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/studio
COPY pyproject.toml README.md LICENSE* /src/
COPY studio /src/studio
RUN pip install --no-cache-dir "/src[${STUDIO_EXTRAS}]" && rm -rf /src
WORKDIR /root
ENTRYPOINT ["studio"]
CMD ["worker", "--help"]
