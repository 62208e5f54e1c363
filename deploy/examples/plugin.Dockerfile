# The proxy with one more plugin: the README's `my-tools` package, beside this file's context.
#   docker build -t openai-tool-proxy:0.1.0 .               # the base image, from the repository
#   docker build -f plugin.Dockerfile -t my-proxy DIR       # DIR holds my-tools/ (README)
# A plugin published on an index installs the same way: `pip install --no-cache-dir my-tools==0.1.0`.
FROM openai-tool-proxy:0.1.0
# The proxy's virtual environment belongs to root: install as root, then serve as the proxy's user.
USER 0
COPY my-tools /src/my-tools
RUN pip install --no-cache-dir /src/my-tools && rm -rf /src/my-tools
USER 10001
