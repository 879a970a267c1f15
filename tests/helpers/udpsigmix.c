/* udpsigmix: a signal handler that receives on one selected UDP socket while its thread
 * is inside a receive on another must never make the thread's replies go to a proxy the
 * flow table does not name. Run under the shim with PROXYSHIM_UDP_PORTS=PA,PB and
 * PROXYSHIM_TRUSTED=127.0.0.21,127.0.0.22:
 *
 *   socket A, 127.0.0.1:PA: the main loop receives client Ca through proxy pA (127.0.0.21);
 *   socket B, 127.0.0.1:PB: a SIGALRM handler (every 20 us) receives client Cb through
 *            proxy pB (127.0.0.22), fed by a thread;
 *   after each receive on A (SIGALRM blocked) B answers Cb and Ca. B's table maps Cb to
 *   pB and has never seen Ca (another port): pA must get nothing.
 *
 * Usage: udpsigmix PA PB SECONDS. Prints "rounds=N handled=H right=R wrong=W" (R: answers
 * that reached pB or Ca, W: those that reached pA). Exit 0, or 1 on a set-up error. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HELPER_NAME "udpsigmix"
#include "udpkit.h"

static int sock_b;
static volatile sig_atomic_t handled;

static struct sockaddr_in addr(const char *ip, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static int bound(const char *ip, int port)
{
	struct sockaddr_in a = addr(ip, port);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a))) {
		perror("udpsigmix: bind");
		exit(1);
	}
	return s;
}

static struct sockaddr_in local(int s)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	getsockname(s, (struct sockaddr *)&a, &l);
	return a;
}

/* A v2 header (UDP over IPv4) from client c to server d, then one payload byte. */
static size_t datagram(uint8_t *h, struct sockaddr_in c, struct sockaddr_in d, char payload)
{
	struct sockaddr_storage src = {0}, dst = {0};
	memcpy(&src, &c, sizeof(c));
	memcpy(&dst, &d, sizeof(d));
	size_t n = uk_v2_header(h, 0x21, &src, &dst, NULL, 0);
	h[n] = (uint8_t)payload;
	return n + 1;
}

static void on_alarm(int sig)
{
	(void)sig;
	int saved = errno;
	char b[64];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	if (recvfrom(sock_b, b, sizeof(b), MSG_DONTWAIT, (struct sockaddr *)&from, &fl) >= 0)
		handled++;
	errno = saved;
}

static int proxy_b, port_b;
static uint8_t dgram_b[64];
static size_t len_b;
static volatile int stop;

/* Keeps B's queue from running dry: 32 datagrams from Cb through pB every millisecond. */
static void *feed_b(void *arg)
{
	(void)arg;
	struct sockaddr_in to = addr("127.0.0.1", port_b);
	while (!stop) {
		for (int i = 0; i < 32; i++)
			sendto(proxy_b, dgram_b, len_b, 0, (struct sockaddr *)&to, sizeof(to));
		usleep(1000);
	}
	return NULL;
}

/* Datagrams waiting on s, all taken. */
static long drain(int s)
{
	char b[64];
	long n = 0;
	while (recv(s, b, sizeof(b), MSG_DONTWAIT) >= 0)
		n++;
	return n;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: udpsigmix PA PB SECONDS\n");
		return 1;
	}
	int port_a = atoi(argv[1]), secs = atoi(argv[3]);
	port_b = atoi(argv[2]);
	int a = bound("127.0.0.1", port_a), proxy_a = bound("127.0.0.21", 0);
	int client_a = bound("127.0.0.11", 0), client_b = bound("127.0.0.12", 0);
	sock_b = bound("127.0.0.1", port_b);
	proxy_b = bound("127.0.0.22", 0);
	struct sockaddr_in ca = local(client_a), cb = local(client_b);
	struct sockaddr_in to_a = addr("127.0.0.1", port_a);
	uint8_t dgram_a[64];
	size_t len_a = datagram(dgram_a, ca, to_a, 'a');
	len_b = datagram(dgram_b, cb, addr("127.0.0.1", port_b), 'b');

	sigset_t alarm;
	sigemptyset(&alarm);
	sigaddset(&alarm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alarm, NULL);
	pthread_t feeder;
	pthread_create(&feeder, NULL, feed_b, NULL);  /* inherits the blocked mask */
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval every = {{0, 20}, {0, 20}};
	setitimer(ITIMER_REAL, &every, NULL);
	pthread_sigmask(SIG_UNBLOCK, &alarm, NULL);

	long rounds = 0, right = 0, wrong = 0;
	time_t end = time(NULL) + secs;
	char buf[64];
	while (time(NULL) < end) {
		sendto(proxy_a, dgram_a, len_a, 0, (struct sockaddr *)&to_a, sizeof(to_a));
		ssize_t r;
		do
			r = recv(a, buf, sizeof(buf), 0);
		while (r < 0 && errno == EINTR);
		pthread_sigmask(SIG_BLOCK, &alarm, NULL);
		sendto(sock_b, "b", 1, 0, (struct sockaddr *)&cb, sizeof(cb));
		sendto(sock_b, "a", 1, 0, (struct sockaddr *)&ca, sizeof(ca));
		pthread_sigmask(SIG_UNBLOCK, &alarm, NULL);
		if (!(++rounds & 63)) {
			wrong += drain(proxy_a);
			right += drain(proxy_b) + drain(client_a);
			drain(client_b);
		}
	}
	pthread_sigmask(SIG_BLOCK, &alarm, NULL);
	stop = 1;
	pthread_join(feeder, NULL);
	usleep(100000);
	wrong += drain(proxy_a);
	right += drain(proxy_b) + drain(client_a);
	printf("rounds=%ld handled=%ld right=%ld wrong=%ld\n", rounds, (long)handled, right, wrong);
	return 0;
}
