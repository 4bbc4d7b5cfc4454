%module timewarpplugin

%import(module="openmm") "swig/OpenMMSwigHeaders.i"
%include "swig/typemaps.i"
%include <std_string.i>
%include <std_vector.i>

%{
#include "OpenMM.h"
#include "OpenMMAmoeba.h"
#include "OpenMMDrude.h"
#include "openmm/RPMDIntegrator.h"
#include "openmm/RPMDMonteCarloBarostat.h"
#include "TimewarpIntegrator.h"
%}

namespace std {
    %template(vectori) vector<int>;
}

/* C++ exceptions become openmm.OpenMMException, as in OpenMM's own module. */
%exception {
    try {
        $action
    } catch (std::exception& e) {
        PyObject* openmmModule = PyImport_ImportModule("openmm");
        PyObject* exceptionType = openmmModule ? PyObject_GetAttrString(openmmModule, "OpenMMException") : NULL;
        PyErr_SetString(exceptionType ? exceptionType : PyExc_Exception, e.what());
        Py_XDECREF(exceptionType);
        Py_XDECREF(openmmModule);
        SWIG_fail;
    }
}

/* The class as its header declares it: SWIG's -doxygen turns the header's comments into the
   Python docstrings that help() shows. */
#define OPENMM_EXPORT_TIMEWARP
%include "TimewarpIntegrator.h"

namespace TimewarpPlugin {

%extend TimewarpIntegrator {
    /** The TimewarpIntegrator behind an openmm.Integrator (e.g. from XmlSerializer). */
    static TimewarpPlugin::TimewarpIntegrator& cast(OpenMM::Integrator& integrator) {
        return dynamic_cast<TimewarpPlugin::TimewarpIntegrator&>(integrator);
    }
    /** Whether an openmm.Integrator is a TimewarpIntegrator. */
    static bool isinstance(OpenMM::Integrator& integrator) {
        return dynamic_cast<TimewarpPlugin::TimewarpIntegrator*>(&integrator) != NULL;
    }
}

}
