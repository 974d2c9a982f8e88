# The worker image used by docker-compose.yml: the product and its command line, nothing else.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY streams ./streams
RUN pip install . && useradd --system --home /var/lib/onestop onestop && mkdir -p /var/lib/onestop && chown onestop /var/lib/onestop
USER onestop
ENV ONESTOP_DATA_DIR=/var/lib/onestop
ENTRYPOINT ["onestop"]
CMD ["worker"]
