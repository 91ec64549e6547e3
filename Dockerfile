FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY clients/js ./clients/js
COPY exporter ./exporter
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin shopper \
    && mkdir /data && chown shopper /data

# Where --state-file keeps the state; a named volume mounted here starts owned by `shopper`.
VOLUME /data

USER shopper
EXPOSE 9462

# The slim image has no curl; Python's urllib is enough. The port follows SHOPPER_PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SHOPPER_PORT', '9462') + '/healthz', timeout=2)"]

CMD ["shopper-exporter", "--host", "0.0.0.0"]
