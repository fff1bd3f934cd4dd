"""What every PASTA module shares, as Slicer's scripted-module template writes it: how it describes
itself (:class:`PastaModule`), and its widget's wiring (:class:`PastaModuleWidget`): the module's .ui
on the scene, its logic, its parameter node bound to the GUI, and what entering, leaving and closing
the scene do to that binding.

The module files derive their classes from these, so they import this file when Slicer discovers
them: it imports only what Slicer's module framework provides (no core, no controllers, nothing heavy).
"""

import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin


class PastaModule(ScriptedLoadableModule):
    """A PASTA module in Slicer's module list: its ``title``, the modules it needs (``dependencies``),
    and the category, contributors and acknowledgement all PASTA modules share. A module's
    ``__init__`` calls this one, then sets its help text."""

    def __init__(self, parent, title: str, dependencies: list) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = title
        self.parent.dependencies = dependencies
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.contributors = ["PASTA for 3D Slicer contributors"]
        self.parent.acknowledgementText = _("""
PASTA for 3D Slicer is developed by its contributors as an open-source 3D Slicer extension.
""")


class PastaModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """A module widget that shows one parameter node.

    A module's ``setup`` calls :meth:`setupModule` first; the module gives ``onSceneStartClose``
    and ``cleanup``, and where the defaults are not enough ``_completeParameterNode`` (nothing),
    ``_onParameterNodeModified`` (update the GUI), ``_parameterNodeShown`` (update the GUI) and
    ``_updateGUI`` (nothing)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setupModule(self, uiFile: str, logicClass: type) -> None:
        """Slicer's part of ``setup``: ``uiFile`` (under the module's Resources) as ``self.ui`` on
        the application's scene, a new ``logicClass()`` as ``self.logic``, and the scene-close
        observers (``onSceneStartClose``, ``onSceneEndClose``)."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(uiFile))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logicClass()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Show the logic's parameter node, completed by :meth:`_completeParameterNode`."""
        parameterNode = self.logic.getParameterNode()
        self._completeParameterNode(parameterNode)
        self.setParameterNode(parameterNode)

    def _completeParameterNode(self, parameterNode) -> None:
        """Fill in what the parameter node lacks before it is shown (nothing by default)."""

    def setParameterNode(self, inputParameterNode) -> None:
        """Bind ``inputParameterNode`` (or None) to the GUI, in place of the one shown, and follow its changes."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNodeShown()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """A parameter changed."""
        self._updateGUI()

    def _parameterNodeShown(self) -> None:
        """A parameter node (or None) was bound."""
        self._updateGUI()

    def _updateGUI(self, caller=None, event=None) -> None:
        """Bring the widgets that no binding covers up to date with the parameter node."""
