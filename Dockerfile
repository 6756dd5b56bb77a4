FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY actors ./actors
COPY api ./api
COPY cli ./cli
RUN apt-get update && apt-get install -y --no-install-recommends procps && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir .
ENV WARREN_API_HOST=0.0.0.0
CMD ["warren", "api"]
