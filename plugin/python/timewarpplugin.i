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

namespace TimewarpPlugin {

class TimewarpIntegrator : public OpenMM::Integrator {
public:
    TimewarpIntegrator(const std::string& modelPath, double temperature,
                       const std::vector<int>& atomTypes,
                       const std::vector<int>& chiralCentres = std::vector<int>());
    const std::string& getModelPath() const;
    double getTemperature() const;
    const std::vector<int>& getAtomTypes() const;
    const std::vector<int>& getChiralCentres() const;
    int getNoiseDim() const;
    bool getIndependentProposals() const;
    int getModelNumAtoms() const;
    int getNumAtomTypes() const;
    int getMaxProposalBatch() const;
    void setMaxProposalBatch(int maxBatch);
    bool getExplorationMode() const;
    double getExplorationThreshold() const;
    void setExplorationMode(bool enabled, double threshold = 300.0);
    int getRandomNumberSeed() const;
    void setRandomNumberSeed(int seed);
    void step(int steps);
    long long getNumSteps() const;
    long long getNumProposed() const;
    long long getNumAccepted() const;
    long long getNumRejectedNonFinite() const;
    long long getNumRejectedChirality() const;
    long long getNumModelCalls() const;
    double getModelSeconds() const;
    double getEnergySeconds() const;
    double getAcceptanceRate() const;
    void resetStatistics();
    int getNumCachedProposals() const;
    int getProposalBatchSize() const;

    %extend {
        /* The TimewarpIntegrator behind an openmm.Integrator (e.g. from XmlSerializer). */
        static TimewarpPlugin::TimewarpIntegrator& cast(OpenMM::Integrator& integrator) {
            return dynamic_cast<TimewarpPlugin::TimewarpIntegrator&>(integrator);
        }
        static bool isinstance(OpenMM::Integrator& integrator) {
            return dynamic_cast<TimewarpPlugin::TimewarpIntegrator*>(&integrator) != NULL;
        }
    }
};

}
