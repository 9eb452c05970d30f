/* sm_cli_verify.c - `scalemix verify [--repair]`: hashes every object in the store against its name. */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "sm_commands.h"
#include "sm_store.h"

static const char verify_usage[] =
    "usage: scalemix verify [--repair] [--workspace DIR]\n"
    "\n"
    "Hashes every object in the workspace's store and compares it with the digest it is named by.\n"
    "  --repair          set corrupt objects aside (in corrupt/): the stages that made them run again on the\n"
    "                    next run, instead of their cached results being reused\n"
    "  --workspace DIR   workspace folder (default $SCALEMIX_HOME or ./.scalemix)\n"
    "\n"
    "exit status: 0 every object is intact (or, with --repair, every corrupt one was set aside), 1 corrupt\n"
    "objects remain, 2 usage error\n";

static int is_hex(const char *s, size_t n) { return strlen(s) == n && strspn(s, "0123456789abcdef") == n; }

int sm_cmd_verify(int argc, char **argv) {
    static const struct option longopts[] = {
        {"repair", no_argument, 0, 'r'}, {"workspace", required_argument, 0, 'w'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int repair = 0, c;
    const char *workspace = NULL;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'r') repair = 1;
        else if (c == 'w') workspace = optarg;
        else if (c == 'h') { fputs(verify_usage, stdout); return 0; }
        else {
            fprintf(stderr, "scalemix verify: unknown or incomplete option '%s'\n%s", argv[optind - 1], verify_usage);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "scalemix verify: unexpected argument '%s'\n%s", argv[optind], verify_usage);
        return 2;
    }
    sm_workspace ws;
    sm_error err = {0};
    if (sm_workspace_open(&ws, workspace, &err) != SM_OK) {
        fprintf(stderr, "scalemix verify: %s\n", err.msg);
        return 1;
    }
    char objects[PATH_MAX];
    sm_workspace_path(&ws, objects, sizeof objects, "objects");
    DIR *top = opendir(objects);
    if (!top) {
        fprintf(stderr, "scalemix verify: cannot read %s\n", objects);
        return 1;
    }
    unsigned long long n = 0, bytes = 0, corrupt = 0, set_aside = 0, other = 0;
    struct dirent *d;
    while ((d = readdir(top))) {
        if (!is_hex(d->d_name, 2)) continue;
        char sub[PATH_MAX + 8];
        snprintf(sub, sizeof sub, "%s/%s", objects, d->d_name);
        DIR *dd = opendir(sub);
        struct dirent *o;
        while (dd && (o = readdir(dd))) {
            if (o->d_name[0] == '.') continue;
            char p[2 * PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", sub, o->d_name);
            struct stat st;
            if (!is_hex(o->d_name, 64) || strncmp(o->d_name, d->d_name, 2)) {
                printf("unexpected file %s (not an object name)\n", p);
                other++;
                continue;
            }
            if (stat(p, &st) == 0) bytes += (unsigned long long)st.st_size;
            n++;
            char have[65];
            if (sm_sha256_file(p, have, NULL, &err) != SM_OK) {
                printf("unreadable %s: %s\n", o->d_name, err.msg);
                corrupt++;
                continue;
            }
            if (!strcmp(have, o->d_name)) continue;
            corrupt++;
            if (!repair) {
                printf("corrupt %s (its bytes hash to %s)\n", o->d_name, have);
            } else if (sm_store_verify(&ws, o->d_name, &err) == SM_ERR_FORMAT && !strstr(err.msg, "cannot be set aside")) {
                printf("corrupt %s: %s\n", o->d_name, err.msg);
                set_aside++;
            } else {
                printf("corrupt %s, not repaired: %s\n", o->d_name, err.msg);
            }
        }
        if (dd) closedir(dd);
    }
    closedir(top);
    printf("verified %llu object(s), %.1f MiB: %llu corrupt%s%s\n", n, bytes / 1048576.0, corrupt,
           repair ? "" : corrupt ? " (run `scalemix verify --repair` to set them aside so their stages run again)" : "",
           other ? "; unexpected files listed above" : "");
    if (repair && corrupt) printf("%llu set aside in %s/corrupt\n", set_aside, ws.root);
    return corrupt > set_aside ? 1 : 0;
}
