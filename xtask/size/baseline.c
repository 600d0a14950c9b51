/* The C baseline of `cargo xtask size`: the work of examples/static_init
 * (lock with mlockall, then read and print the VmLck line of
 * /proc/self/status) in lean C, without stdio. Built with
 * `musl-gcc -static -Os -s`. /proc/self/status is about 1.5 KB, so one
 * read of 4 KiB takes all of it. */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	char buf[4096];
	ssize_t n;
	int fd;
	char *line, *end;

	if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
		return 1;
	fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	line = strstr(buf, "VmLck:");
	if (line == NULL)
		return 1;
	end = strchr(line, '\n');
	if (write(1, line, end ? (size_t)(end - line + 1) : strlen(line)) < 0)
		return 1;
	return 0;
}
