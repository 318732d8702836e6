<#
.SYNOPSIS
    Runs the four cme-batch reports through SIMS CommandReporter and drops each XML file,
    complete or not at all, into the folder the cme-batch server reads.

.DESCRIPTION
    For each report (pupils, admissions, leavers, marks) this script:
      1. runs CommandReporter.exe with /OUTPUT to a local temporary file;
      2. refuses the output if CommandReporter failed, wrote nothing, or wrote a
         <CommandReporterError> document instead of a <SuperStarReport>;
      3. copies the file into the drop folder under a temporary name (NAME.xml.tmp) and then
         renames it to NAME.xml, so cme-batch never reads a half-written file.
    File names are <report>-<yyyyMMddTHHmmss>.xml; cme-batch groups files by the part before
    the timestamp and reads the newest of each.

    Nothing from the reports (names, UPNs) is written to the console or the event log: only
    report names, sizes and errors.

    Schedule it with Task Scheduler, nightly after registers close, as a Windows account that
    can run the reports in SIMS (see adapters/sims/README.md, "Scheduling on the SIMS server").

.PARAMETER DropFolder
    Where cme-batch reads the files: a local folder or a UNC path such as \\cme-server\sims-drop.

.PARAMETER ServerName
    The SIMS SQL Server instance, e.g. SIMSSERVER\SIMS2017.

.PARAMETER DatabaseName
    The SIMS database name, e.g. SIMS.

.PARAMETER CredentialFile
    A credential saved by the same Windows account with
        Get-Credential | Export-Clixml -Path C:\ProgramData\cme-batch\sims-credential.xml
    (protected by Windows DPAPI: only that account on that machine can read it).
    Leave it out to use Windows authentication (/TRUSTED); the reports must then be in the
    account's "My Reports".

.PARAMETER Reports
    Report kind -> report name in SIMS. The defaults are the names adapters/sims/README.md asks
    the school to create.

.EXAMPLE
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File Export-CmeReports.ps1 `
        -DropFolder \\cme-server\sims-drop -ServerName SIMSSERVER\SIMS2017 -DatabaseName SIMS `
        -CredentialFile C:\ProgramData\cme-batch\sims-credential.xml
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $DropFolder,
    [Parameter(Mandatory = $true)] [string] $ServerName,
    [Parameter(Mandatory = $true)] [string] $DatabaseName,
    [string] $CredentialFile,
    [hashtable] $Reports = [ordered]@{
        pupils     = 'CME Pupils'
        admissions = 'CME Admissions'
        leavers    = 'CME Leavers'
        marks      = 'CME Attendance Marks'
    },
    [int] $TimeoutMinutes = 30
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Find-CommandReporter {
    $candidates = @(
        (Join-Path ${env:ProgramFiles(x86)} 'SIMS\SIMS .net\CommandReporter.exe'),
        (Join-Path $env:ProgramFiles 'SIMS\SIMS .net\CommandReporter.exe')
    )
    foreach ($c in $candidates) {
        if ($c -and (Test-Path -LiteralPath $c)) { return $c }
    }
    throw "CommandReporter.exe not found under Program Files\SIMS\SIMS .net"
}

function Get-LoginArguments {
    if (-not $CredentialFile) { return @('/TRUSTED') }
    $cred = Import-Clixml -LiteralPath $CredentialFile
    return @("/USER:$($cred.UserName)", "/PASSWORD:$($cred.GetNetworkCredential().Password)")
}

function Test-ReportOutput([string] $Path) {
    # Returns $null when the file is a report, else the reason it is not.
    if (-not (Test-Path -LiteralPath $Path)) { return 'no output file was written' }
    if ((Get-Item -LiteralPath $Path).Length -eq 0) { return 'the output file is empty' }
    if (Select-String -LiteralPath $Path -Pattern '<CommandReporterError' -SimpleMatch -Quiet) {
        return 'CommandReporter wrote <CommandReporterError> (report missing, or no permission to run it)'
    }
    if (-not (Select-String -LiteralPath $Path -Pattern '<SuperStarReport' -SimpleMatch -Quiet)) {
        return 'the output is not a SuperStarReport XML document'
    }
    return $null
}

function Publish-Atomically([string] $Source, [string] $Folder, [string] $Name) {
    $final = Join-Path $Folder $Name
    $temp = "$final.tmp"
    Copy-Item -LiteralPath $Source -Destination $temp -Force
    if (Test-Path -LiteralPath $final) { Remove-Item -LiteralPath $final -Force }
    Rename-Item -LiteralPath $temp -NewName $Name
}

$exe = Find-CommandReporter
if (-not (Test-Path -LiteralPath $DropFolder)) { throw "drop folder $DropFolder is not reachable" }
$work = Join-Path $env:TEMP ("cme-batch-" + [guid]::NewGuid().ToString('N'))
New-Item -ItemType Directory -Path $work | Out-Null
$stamp = (Get-Date).ToString('yyyyMMddTHHmmss')
$failed = @()
try {
    $login = Get-LoginArguments
    foreach ($kind in $Reports.Keys) {
        $report = $Reports[$kind]
        $out = Join-Path $work "$kind.xml"
        $arguments = @("/SERVERNAME:$ServerName", "/DATABASENAME:$DatabaseName") + $login + @(
            "/REPORT:`"$report`"", "/OUTPUT:`"$out`"", '/QUIET')
        $proc = Start-Process -FilePath $exe -ArgumentList $arguments -NoNewWindow -PassThru
        if (-not $proc.WaitForExit($TimeoutMinutes * 60 * 1000)) {
            $proc.Kill()
            $failed += "${kind}: CommandReporter did not finish within $TimeoutMinutes minutes"
            continue
        }
        $why = Test-ReportOutput $out
        if ($proc.ExitCode -ne 0 -and -not $why) { $why = "CommandReporter exited with code $($proc.ExitCode)" }
        if ($why) {
            $failed += "${kind} ('$report'): $why"
            continue
        }
        Publish-Atomically $out $DropFolder "$kind-$stamp.xml"
        Write-Output ("{0}: {1:N0} bytes published" -f $kind, (Get-Item -LiteralPath $out).Length)
    }
}
finally {
    Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
}

if ($failed.Count -gt 0) {
    # cme-batch also notices: a report that does not arrive is reported as stale in its summary.
    foreach ($f in $failed) { Write-Error -Message $f -ErrorAction Continue }
    exit 1
}
exit 0
