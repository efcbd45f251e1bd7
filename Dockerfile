FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY deploy ./deploy
COPY capstream ./capstream
RUN pip install --no-cache-dir .
ENTRYPOINT ["capstream"]
