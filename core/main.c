/* main.c - the scalemix command line: dispatches to the subcommands in sm_commands.h. */
#include <stdio.h>
#include <string.h>
#include "sm_commands.h"
int main(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "scalemix: the CLI is being assembled\n");
    return 2;
}
