"""Small widget helpers the PASTA modules share (GUI thread only).

- :func:`selectFirstVolume`: an empty input-volume parameter starts at the scene's first volume.
- :func:`fillComboBox` / :func:`showComboData`: combo boxes whose choices are only known at
  run time (installed models, lesion types), kept in step with a parameter-node string.
"""


def selectFirstVolume(parameterNode, attribute="inputVolume") -> None:
    """Set an empty volume parameter to the scene's first scalar volume, if there is one."""
    import slicer

    if not getattr(parameterNode, attribute):
        first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if first:
            setattr(parameterNode, attribute, first)


def fillComboBox(comboBox, items, emptyText) -> None:
    """Replace the choices with ``items`` ((text, data, tooltip or None), ...) without
    signalling; ``emptyText`` (data "") when there are none."""
    import qt

    wasBlocked = comboBox.blockSignals(True)
    comboBox.clear()
    for text, data, tooltip in items:
        comboBox.addItem(text, data)
        if tooltip:
            comboBox.setItemData(comboBox.count - 1, tooltip, qt.Qt.ToolTipRole)
    if not items:
        comboBox.addItem(emptyText, "")
    comboBox.blockSignals(wasBlocked)


def showComboData(comboBox, data) -> None:
    """Select the choice whose data is ``data`` (if any) without signalling."""
    index = comboBox.findData(data)
    if index >= 0 and index != comboBox.currentIndex:
        wasBlocked = comboBox.blockSignals(True)
        comboBox.currentIndex = index
        comboBox.blockSignals(wasBlocked)
