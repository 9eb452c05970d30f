/* sm_version.h - the engine's version. */
#ifndef SM_VERSION_H
#define SM_VERSION_H
#define SM_VERSION "0.1.0"
#endif
