# Shared by loadtest/grpc and loadtest/grpc_instructions (sourced, not run): the files of one
# gRPC run in RUN: the call and the answer (request.bin, www/), the h2c backend's nginx config
# (backend.conf), the peers' configs (nginx.conf: grpc_pass with an upstream keepalive pool;
# haproxy.cfg: HTTP/2 on both sides) and stagegate's (stagegate.json: one h2c version).
# NGINX_EXTRA: main-context directives for the nginx peer (the instruction count runs it
# without a master process, so valgrind follows the one that serves).
write_grpc_setup() {  # RUN BACKEND_PORT NGINX_PORT HAPROXY_PORT STAGEGATE_PORT ADMIN_PORT
  local run=$1 backend_port=$2 nginx_port=$3 haproxy_port=$4 stagegate_port=$5 admin_port=$6
  local nginx_extra=${NGINX_EXTRA:-}
mkdir -p "$run/tmp" "$run/www/inference.GRPCInferenceService"
chmod 755 "$run" "$run/www" "$run/www/inference.GRPCInferenceService"  # nginx's workers (not root) read the answer
# The gRPC messages (protobuf by hand; tests/clients/grpc/inference.proto decodes both):
# ModelInferRequest {model_name: "m", inputs: [{name: "x", datatype: "FP32", shape: [1, 3],
# contents: {fp32_contents: [0.5, 1.5, 2.5]}}]} and ModelInferResponse {model_name: "m",
# model_version: "v1", outputs: [{name: "y", datatype: "FP32", shape: [1, 2],
# contents: {fp32_contents: [0.1, 0.9]}}]}, each behind its 5-byte prefix (uncompressed, length).
printf '\x00\x00\x00\x00\x22\x0a\x01\x6d\x2a\x1d\x0a\x01\x78\x12\x04\x46\x50\x33\x32\x1a\x02\x01\x03\x2a\x0e\x32\x0c\x00\x00\x00\x3f\x00\x00\xc0\x3f\x00\x00\x20\x40' >"$run/request.bin"
printf '\x00\x00\x00\x00\x22\x0a\x01\x6d\x12\x02\x76\x31\x2a\x19\x0a\x01\x79\x12\x04\x46\x50\x33\x32\x1a\x02\x01\x02\x2a\x0a\x32\x08\xcd\xcc\xcc\x3d\x66\x66\x66\x3f' >"$run/www/ModelInfer"
cp "$run/www/ModelInfer" "$run/www/inference.GRPCInferenceService/ModelInfer"  # its POSTs get 405

local temp_paths="client_body_temp_path $run/tmp; proxy_temp_path $run/tmp; fastcgi_temp_path $run/tmp;
  uwsgi_temp_path $run/tmp; scgi_temp_path $run/tmp;"
cat >"$run/backend.conf" <<EOF
worker_processes 1; daemon off; pid $run/backend.pid; error_log $run/backend.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off; keepalive_requests ${BACKEND_REQUESTS_PER_CONNECTION:-10000}; keepalive_timeout 600s; http2_max_concurrent_streams 8192;
  $temp_paths
  types { } default_type application/grpc; etag off; open_file_cache max=16;
  server { listen 127.0.0.1:$backend_port http2 backlog=4096; root $run/www;
    location / { mirror /read-body; mirror_request_body on; error_page 405 =200 /ModelInfer; }
    location = /read-body { internal; return 204; }
    location = /ModelInfer { internal; add_trailer grpc-status 0 always; } }
}
EOF
cat >"$run/nginx.conf" <<EOF
worker_processes 1; $nginx_extra daemon off; pid $run/nginx.pid; error_log $run/nginx.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off; keepalive_requests 10000000; http2_max_concurrent_streams 128;
  $temp_paths
  upstream grpcbackend { server 127.0.0.1:$backend_port; keepalive 8192;
    keepalive_requests 10000000; keepalive_timeout 600s; }
  server { listen 127.0.0.1:$nginx_port http2 backlog=4096;
    location / { grpc_pass grpc://grpcbackend; } }
}
EOF
cat >"$run/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend h2
  bind 127.0.0.1:$haproxy_port proto h2
  default_backend grpcbackend
backend grpcbackend
  server b 127.0.0.1:$backend_port proto h2
EOF
cat >"$run/stagegate.json" <<EOF
{"listeners": [{"address": "127.0.0.1", "port": $stagegate_port}],
 "admin": {"address": "127.0.0.1", "port": $admin_port}, "workers": 1,
 "models": [{"name": "m", "stable": "v1",
             "versions": [{"name": "v1", "protocol": "h2c", "endpoints": ["127.0.0.1:$backend_port"]}]}]}
EOF
}
