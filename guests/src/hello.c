/* hello: the default example guest. Prints a greeting and its argc/argv. */
#include <stdio.h>

int main(int argc, char **argv)
{
    printf("Hello from RISC-V!\n");
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    return 0;
}
