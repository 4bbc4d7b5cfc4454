#ifndef OPENMM_WINDOW_EXPORT_TIMEWARP_H_
#define OPENMM_WINDOW_EXPORT_TIMEWARP_H_

#if defined(_MSC_VER)
#if defined(TIMEWARP_BUILDING_SHARED_LIBRARY)
#define OPENMM_EXPORT_TIMEWARP __declspec(dllexport)
#else
#define OPENMM_EXPORT_TIMEWARP __declspec(dllimport)
#endif
#else
#define OPENMM_EXPORT_TIMEWARP __attribute__((visibility("default")))
#endif

#endif /*OPENMM_WINDOW_EXPORT_TIMEWARP_H_*/
