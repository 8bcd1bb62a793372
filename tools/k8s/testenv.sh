#!/usr/bin/env bash
# A real Kubernetes API server for the tests, on loopback: etcd, kube-apiserver and
# kube-controller-manager v1.20.2 (built by tools/k8s/build.sh). There is no kubelet and no
# scheduler: the tests' own kubelet runs the pods. Users alice, bob, carol and dave (group
# ambient-testers) sign in with the tokens in <run dir>/tokens.csv.
#   tools/k8s/testenv.sh start <bin dir> <run dir>   starts them, writes <run dir>/kubeconfig
#   tools/k8s/testenv.sh stop <run dir>              stops what `start` started (by pid)
set -euo pipefail
cmd="${1:?usage: testenv.sh start <bin dir> <run dir> | stop <run dir>}"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
	local run="$1"
	for name in kube-controller-manager kube-apiserver etcd; do
		local f="$run/$name.pid"
		if [ -f "$f" ]; then
			local pid
			pid="$(cat "$f")"
			if kill "$pid" 2> /dev/null; then
				for _ in $(seq 1 50); do
					kill -0 "$pid" 2> /dev/null || break
					sleep 0.1
				done
				kill -9 "$pid" 2> /dev/null || true
			fi
			rm -f "$f"
		fi
	done
}

case "$cmd" in
start)
	bin="${2:?bin dir}"
	run="${3:?run dir}"
	stop "$run" 2> /dev/null || true
	rm -rf "$run"
	mkdir -p "$run/etcd" "$run/certs"
	etcd_client="$(free_port)"
	etcd_peer="$(free_port)"
	api_port="$(free_port)"
	token="$(openssl rand -hex 24)"
	echo "$token,admin,admin-uid,\"system:masters\"" > "$run/tokens.csv"
	# People for the permission tests: alice, bob and carol alone; dave in ambient-testers.
	for user in alice bob carol dave; do
		groups=""
		[ "$user" = dave ] && groups="ambient-testers"
		echo "$(openssl rand -hex 24),$user,$user-uid,\"$groups\"" >> "$run/tokens.csv"
	done
	openssl genrsa -out "$run/certs/sa.key" 2048 2> /dev/null
	openssl rsa -in "$run/certs/sa.key" -pubout -out "$run/certs/sa.pub" 2> /dev/null
	etcd --data-dir "$run/etcd" --name test \
		--listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
		--initial-cluster "test=http://127.0.0.1:$etcd_peer" \
		--unsafe-no-fsync > "$run/etcd.log" 2>&1 &
	echo $! > "$run/etcd.pid"
	"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_client" \
		--secure-port "$api_port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
		--endpoint-reconciler-type none --cert-dir "$run/certs" \
		--token-auth-file "$run/tokens.csv" --authorization-mode RBAC \
		--service-account-issuer https://kubernetes.default.svc \
		--service-account-key-file "$run/certs/sa.pub" \
		--service-account-signing-key-file "$run/certs/sa.key" \
		--service-cluster-ip-range 10.0.0.0/24 \
		--enable-admission-plugins NamespaceLifecycle,ServiceAccount \
		> "$run/kube-apiserver.log" 2>&1 &
	echo $! > "$run/kube-apiserver.pid"
	ca="$run/certs/apiserver.crt"
	for _ in $(seq 1 300); do
		[ -f "$ca" ] && curl -fsS --cacert "$ca" -H "Authorization: Bearer $token" \
			"https://127.0.0.1:$api_port/readyz" > /dev/null 2>&1 && break
		sleep 0.1
	done
	cat > "$run/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $ca
users:
- name: admin
  user:
    token: $token
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
KC
	# The client's rate limit raised from 1.20's 20 requests/s: the Job controller makes a
	# pod with a few requests, so 5,000 Jobs took 15 minutes to get their pods.
	"$bin/kube-controller-manager" --kubeconfig "$run/kubeconfig" \
		--controllers garbagecollector,job,namespace,serviceaccount,serviceaccount-token,pvc-protection,deployment,replicaset \
		--service-account-private-key-file "$run/certs/sa.key" --root-ca-file "$ca" \
		--leader-elect=false --secure-port 0 --port 0 \
		--kube-api-qps 100 --kube-api-burst 200 \
		> "$run/kube-controller-manager.log" 2>&1 &
	echo $! > "$run/kube-controller-manager.pid"
	if ! curl -fsS --cacert "$ca" -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz" > /dev/null; then
		echo "the test API server did not become ready; see $run/kube-apiserver.log" >&2
		tail -20 "$run/kube-apiserver.log" >&2 || true
		stop "$run"
		exit 1
	fi
	# A controller-manager that refused its flags exits at once, and Jobs would never get pods.
	sleep 1
	if ! kill -0 "$(cat "$run/kube-controller-manager.pid")" 2>/dev/null; then
		echo "kube-controller-manager exited; see $run/kube-controller-manager.log" >&2
		head -5 "$run/kube-controller-manager.log" >&2 || true
		stop "$run"
		exit 1
	fi
	echo "test API server ready: https://127.0.0.1:$api_port (KUBECONFIG=$run/kubeconfig)"
	;;
stop)
	stop "${2:?run dir}"
	;;
*)
	echo "unknown command $cmd" >&2
	exit 2
	;;
esac
